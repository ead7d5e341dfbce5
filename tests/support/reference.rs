//! The baseline the benchmarks measure loophost against: a host built only
//! from upstream's crates, the way the wasmtime CLI is (the `reference-host`
//! binary is its command line).
//!
//! [`run`] links upstream's full `wasi:sockets` (real kernel sockets; our fork
//! only widens visibility, so this is upstream's code path) and starts the
//! `--with` components in the background in the same process, as `loophost
//! run` does. [`serve`] answers each HTTP/1 request with a fresh instance of a
//! `wasi:http/proxy` component from a `ProxyPre` on a pooling-allocator
//! engine, as `wasmtime serve` does.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct State {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// A store's data: real sockets and name lookup, inherited stdio.
pub fn state(argv: &[String]) -> State {
    let mut wasi = WasiCtx::builder();
    // As `wasmtime run -S inherit-network` (whose -S tcp and -S udp default to on).
    wasi.inherit_stdio()
        .inherit_network()
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true)
        .args(argv);
    State {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
    }
}

/// `run [--with 'PATH ARGS']... PATH ARGS`: the background components, then the main one.
pub async fn run(args: &[String]) -> Result<()> {
    let engine = Engine::new(&Config::new())?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let mut rest = args;
    let mut background = Vec::new();
    while let [flag, spec, tail @ ..] = rest {
        if flag != "--with" {
            break;
        }
        background.push(shlex_split(spec));
        rest = tail;
    }
    let main: Vec<String> = rest.to_vec();
    if main.is_empty() {
        bail!("run: no component given");
    }
    for argv in background {
        let (engine, linker) = (engine.clone(), linker.clone());
        tokio::spawn(async move {
            if let Err(e) = run_one(&engine, &linker, &argv).await {
                eprintln!("reference-host: {}: {e:#}", argv[0]);
            }
        });
    }
    run_one(&engine, &linker, &main).await
}

/// `--with` takes "PATH ARGS" split at whitespace (benchmark paths have none).
fn shlex_split(spec: &str) -> Vec<String> {
    spec.split_whitespace().map(str::to_string).collect()
}

async fn run_one(engine: &Engine, linker: &Linker<State>, argv: &[String]) -> Result<()> {
    let component = Component::from_file(engine, &argv[0])
        .map_err(anyhow::Error::from)
        .with_context(|| argv[0].clone())?;
    let mut store = Store::new(engine, state(argv));
    let command = Command::instantiate_async(&mut store, &component, linker).await?;
    let outcome = command.wasi_cli_run().call_run(&mut store).await?;
    if outcome.is_err() {
        bail!("exited with an error");
    }
    Ok(())
}

/// Links a `wasi:http/proxy` component as `wasmtime serve` does.
pub fn proxy_pre(engine: &Engine, path: &str) -> Result<ProxyPre<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let component = Component::from_file(engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| path.to_string())?;
    Ok(ProxyPre::new(linker.instantiate_pre(&component)?)?)
}

/// Serves HTTP/1 on `addr` with one instance of the component per request.
pub async fn serve(addr: SocketAddr, path: &str) -> Result<()> {
    // As `wasmtime serve`: pooling allocator, one instance per request.
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::default()));
    let engine = Engine::new(&config)?;
    let pre = Arc::new(proxy_pre(&engine, path)?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (engine, pre) = (engine.clone(), pre.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (engine, pre) = (engine.clone(), pre.clone());
                async move { handle(&engine, &pre, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Answers one request with a fresh instance from `pre`.
pub async fn handle(
    engine: &Engine,
    pre: &ProxyPre<State>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>> {
    let mut store = Store::new(engine, state(&[]));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(sender)?;
    let proxy = pre.instantiate_async(&mut store).await?;
    let task = tokio::spawn(async move {
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => bail!("component error: {code:?}"),
        Err(_) => {
            task.await??;
            bail!("component set no response")
        }
    }
}
