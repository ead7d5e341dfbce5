//! Host bindings for the seven `wasi:sockets` 0.2 interfaces.
//!
//! The WIT comes from the vendored wasmtime-wasi (materialized by
//! `scripts/vendor-wasmtime-wasi.sh`), so our interfaces always match the
//! version of WASI the rest of the host implements. `wasi:io` and
//! `wasi:clocks` are shared with wasmtime-wasi; every socket resource is a
//! type of this crate.

wasmtime::component::bindgen!({
    path: "../../vendor/wasmtime-wasi/src/p2/wit",
    world: "wasi:sockets/imports",
    imports: {
        "wasi:sockets/tcp.[method]tcp-socket.start-bind": async | trappable | tracing,
        "wasi:sockets/tcp.[method]tcp-socket.start-listen": async | trappable | tracing,
        "wasi:sockets/udp.[method]udp-socket.start-bind": async | trappable | tracing,
        "wasi:sockets/udp.[method]udp-socket.stream": async | trappable | tracing,
        default: trappable | tracing,
    },
    trappable_error_type: {
        "wasi:sockets/network.error-code" => crate::SocketError,
    },
    with: {
        "wasi:io/poll": wasmtime_wasi_io::bindings::wasi::io::poll,
        "wasi:io/streams": wasmtime_wasi_io::bindings::wasi::io::streams,
        "wasi:io/error": wasmtime_wasi_io::bindings::wasi::io::error,
        "wasi:clocks/monotonic-clock": wasmtime_wasi::p2::bindings::clocks::monotonic_clock,

        "wasi:sockets/network.network": crate::Network,
        "wasi:sockets/tcp.tcp-socket": crate::tcp::TcpSocket,
        "wasi:sockets/udp.udp-socket": crate::udp::UdpSocket,
        "wasi:sockets/udp.incoming-datagram-stream": crate::udp::IncomingDatagramStream,
        "wasi:sockets/udp.outgoing-datagram-stream": crate::udp::OutgoingDatagramStream,
        "wasi:sockets/ip-name-lookup.resolve-address-stream": crate::lookup::ResolveAddressStream,
    },
});

pub use wasi::sockets::*;
