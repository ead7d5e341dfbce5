//! loophost: a WebAssembly host whose components reach long-lived services
//! over an in-memory localhost.
//!
//! - [`component`]: loading component files, with errors that name the file.
//! - [`compile_cache`]: compiled components kept on disk between starts.
//! - [`state`]: what each store holds (WASI, the virtual sockets).
//! - [`run`]: running `wasi:cli/run` components, alone or side by side on one
//!   virtual network (`loophost run`).
//! - [`policy`]: turning command-line flags into a socket [`Policy`](wasi_sockets_virt::Policy).

pub mod compile_cache;
pub mod component;
pub mod denials;
pub mod http;
pub mod manifest;
pub mod metrics;
pub mod mounts;
pub mod output;
pub mod policy;
pub mod published;
pub mod run;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod telemetry;
pub mod trace_context;
pub mod trigger;
pub mod up;
