//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift is most of a cold start (hundreds of
//! milliseconds per component), and the result depends only on the
//! component's bytes and the engine's compilation settings. So `run`, `up`
//! and `check` keep what they compile under a key made of both and load it
//! on the next start instead of compiling again.
//!
//! Entries are never trusted: wasmtime's deserialization maps the code as
//! given, so each file carries a BLAKE3 digest of its contents and anything
//! that fails the check (a torn write, a flipped bit, another program's
//! file) is removed and recompiled. Writers never expose half a file: each
//! writes a private temporary file in the cache directory and renames it into
//! place, which is atomic, so concurrent `loophost` processes at worst both
//! compile and the last rename wins with an equally valid entry.

use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every entry; bump the digit when the layout changes.
const MAGIC: &[u8; 8] = b"LHCC\x01\0\0\0";
const DIGEST_LEN: usize = 32;

/// Where compiled components are kept.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

/// What a lookup found, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// An entry was there but failed its check; it was replaced.
    Corrupt,
}

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: dir.into() }
    }

    /// The default location: `$XDG_CACHE_HOME/loophost/components`, else
    /// `$HOME/.cache/loophost/components`; `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })?;
        Some(base.join("loophost").join("components"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry for `wasm` compiled by `engine` lives in.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", key(engine, wasm)))
    }

    /// Returns the compiled component for `wasm`, from the cache when a valid
    /// entry exists, else compiled now and stored. A cache that cannot be
    /// written (read-only disk, full disk) only costs the next start a
    /// compile: it is logged, never an error.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8], shown: &Path) -> Result<(Component, Lookup)> {
        let path = self.entry_path(engine, wasm);
        let mut lookup = Lookup::Miss;
        if let Ok(file) = std::fs::read(&path) {
            match verified_payload(&file).map(|payload| deserialize(engine, payload)) {
                Some(Ok(component)) => return Ok((component, Lookup::Hit)),
                Some(Err(err)) => tracing::warn!(
                    "compile cache: {}: cannot be loaded ({err}); recompiling {}",
                    path.display(),
                    shown.display()
                ),
                None => tracing::warn!(
                    "compile cache: {}: corrupt entry; recompiling {}",
                    path.display(),
                    shown.display()
                ),
            }
            let _ = std::fs::remove_file(&path);
            lookup = Lookup::Corrupt;
        }
        let component = Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{}: invalid component", shown.display()))?;
        if let Err(err) = self.store(&path, &component) {
            tracing::warn!(
                "compile cache: cannot store {} in {}: {err:#}; it will be compiled again next time",
                shown.display(),
                self.dir.display()
            );
        }
        Ok((component, lookup))
    }

    fn store(&self, path: &Path, component: &Component) -> Result<()> {
        let payload = component.serialize().map_err(anyhow::Error::from)?;
        std::fs::create_dir_all(&self.dir).with_context(|| format!("create {}", self.dir.display()))?;
        // A temporary name no other writer uses, in the same directory so
        // the rename cannot cross file systems.
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id(),
            unique()
        ));
        let written = (|| -> Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(blake3::hash(&payload).as_bytes())?;
            file.write_all(&payload)?;
            file.sync_data()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// The payload of an entry whose digest matches, else `None`.
fn verified_payload(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < DIGEST_LEN {
        return None;
    }
    let (digest, payload) = rest.split_at(DIGEST_LEN);
    (blake3::hash(payload).as_bytes() == digest).then_some(payload)
}

fn deserialize(engine: &Engine, payload: &[u8]) -> Result<Component> {
    // SAFETY: `payload` is exactly what `Component::serialize` wrote with
    // this cache (its digest matched), and wasmtime itself refuses artifacts
    // from another wasmtime version or an incompatible engine configuration.
    unsafe { Component::deserialize(engine, payload) }.map_err(anyhow::Error::from)
}

/// The cache key: the component's bytes and everything about the engine
/// that changes the compiled code (wasmtime's own compatibility hash covers
/// its version, the target and the compilation settings).
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = DigestHasher(blake3::Hasher::new());
    hasher.0.update(b"loophost compile cache\0");
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(&(wasm.len() as u64).to_le_bytes());
    hasher.0.update(wasm);
    hasher.0.finalize().to_hex().to_string()
}

/// Feeds `Hash` implementations into BLAKE3 (std's hashers are neither
/// stable across releases nor collision resistant).
struct DigestHasher(blake3::Hasher);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_intact_entry_has_a_payload() {
        let payload = b"compiled code".as_slice();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(blake3::hash(payload).as_bytes());
        file.extend_from_slice(payload);
        assert_eq!(verified_payload(&file), Some(payload));

        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verified_payload(&flipped), None, "a flipped bit");
        assert_eq!(verified_payload(&file[..file.len() - 3]), None, "a torn write");
        assert_eq!(verified_payload(&file[..20]), None, "shorter than a digest");
        assert_eq!(verified_payload(b"\0asm\x0d\0\x01\0"), None, "another file");
    }
}
