//! The generated `wasi:sockets` host traits, implemented on [`SocketsCtxView`].
//!
//! These are thin: look the resource up in the table, call the socket's
//! state machine, push results back into the table.

mod network;
mod tcp;
mod udp;
