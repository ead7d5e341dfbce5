//! Loading component files. Every error names the file and says what to do.

use anyhow::{Context, Result, bail};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// The engine all stores share (Cranelift-compiled; async host calls, so a
/// guest blocked on a socket does not block a thread).
pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    Engine::new(&config).map_err(anyhow::Error::from)
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Reads and compiles a component, checking the file is really one.
pub fn load(engine: &Engine, path: &Path) -> Result<Component> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read component file"))?;
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        bail!("{shown}: not a WebAssembly file (expected a wasm32-wasip2 component)");
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, 1 a component.
    if bytes[6..8] == [0, 0] {
        bail!(
            "{shown}: is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
        );
    }
    Component::new(engine, &bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{shown}: invalid component"))
}

/// Checks that `component` exports `interface` (e.g. `wasi:cli/run`) in any 0.2 version.
pub fn require_export(engine: &Engine, component: &Component, path: &Path, interface: &str) -> Result<()> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let found = exports
        .iter()
        .any(|name| name == interface || name.starts_with(&format!("{interface}@")));
    if !found {
        let list = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        bail!("{}: does not export {interface} (it exports {list})", path.display());
    }
    Ok(())
}
