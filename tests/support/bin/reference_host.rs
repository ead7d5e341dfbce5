//! `reference-host`: the benchmarks' baseline host (see
//! `loophost_tests::reference`).
//!
//! ```text
//! reference-host run [--with 'PATH ARGS']... PATH ARGS   like `wasmtime run -S inherit-network`
//! reference-host serve ADDR PATH                         like `wasmtime serve`
//! ```

use anyhow::{Result, bail};
use loophost_tests::reference;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.split_first() {
        Some((cmd, rest)) if cmd == "run" => runtime.block_on(reference::run(rest)),
        Some((cmd, [addr, path])) if cmd == "serve" => runtime.block_on(reference::serve(addr.parse()?, path)),
        _ => bail!("usage: reference-host run [--with 'PATH ARGS']... PATH ARGS | serve ADDR PATH"),
    }
}
