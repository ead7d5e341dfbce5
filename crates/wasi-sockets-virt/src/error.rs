//! Socket errors and every mapping into `wasi:sockets` error codes.
//!
//! All conversions live here so the rest of the crate can use `?` freely:
//! upstream's socket-core errors, `std::io::Error`s from real sockets and
//! resource-table failures (which are host bugs or guest misuse and trap).

use crate::bindings::network::ErrorCode;
use std::fmt;
use wasmtime::component::ResourceTableError;

/// A `wasi:sockets` error: either an error code the guest sees, or a trap.
pub enum SocketError {
    /// Returned to the guest as `error-code`.
    Code(ErrorCode),
    /// Aborts the guest (e.g. a dangling resource handle).
    Trap(wasmtime::Error),
}

/// Result of a `wasi:sockets` host function.
pub type SocketResult<T> = Result<T, SocketError>;

impl SocketError {
    /// The error code, if this error is not a trap.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SocketError::Code(code) => Some(*code),
            SocketError::Trap(_) => None,
        }
    }

    pub(crate) fn into_wasmtime(self) -> wasmtime::Result<ErrorCode> {
        match self {
            SocketError::Code(code) => Ok(code),
            SocketError::Trap(err) => Err(err),
        }
    }
}

impl fmt::Debug for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::Code(code) => write!(f, "{code:?}"),
            SocketError::Trap(err) => write!(f, "trap: {err:?}"),
        }
    }
}

impl From<ErrorCode> for SocketError {
    fn from(code: ErrorCode) -> Self {
        SocketError::Code(code)
    }
}

impl From<ResourceTableError> for SocketError {
    fn from(err: ResourceTableError) -> Self {
        SocketError::Trap(err.into())
    }
}

impl From<wasmtime_wasi::sockets::ErrorCode> for SocketError {
    fn from(code: wasmtime_wasi::sockets::ErrorCode) -> Self {
        SocketError::Code(from_upstream(code))
    }
}

impl From<std::io::Error> for SocketError {
    fn from(err: std::io::Error) -> Self {
        SocketError::Code(from_io(&err))
    }
}

impl From<wasmtime_wasi::p2::SocketError> for SocketError {
    fn from(err: wasmtime_wasi::p2::SocketError) -> Self {
        match err.downcast() {
            Ok(code) => SocketError::Code(from_upstream_p2(code)),
            Err(trap) => SocketError::Trap(trap),
        }
    }
}

/// Maps upstream's socket-core error (used by real OS sockets).
pub(crate) fn from_upstream(code: wasmtime_wasi::sockets::ErrorCode) -> ErrorCode {
    use wasmtime_wasi::sockets::ErrorCode as Up;
    match code {
        Up::AccessDenied => ErrorCode::AccessDenied,
        Up::NotSupported => ErrorCode::NotSupported,
        Up::InvalidArgument => ErrorCode::InvalidArgument,
        Up::OutOfMemory => ErrorCode::OutOfMemory,
        Up::Timeout => ErrorCode::Timeout,
        Up::InvalidState => ErrorCode::InvalidState,
        Up::AddressNotBindable => ErrorCode::AddressNotBindable,
        Up::AddressInUse => ErrorCode::AddressInUse,
        Up::RemoteUnreachable => ErrorCode::RemoteUnreachable,
        Up::ConnectionRefused => ErrorCode::ConnectionRefused,
        Up::ConnectionBroken => ErrorCode::ConnectionReset,
        Up::ConnectionReset => ErrorCode::ConnectionReset,
        Up::ConnectionAborted => ErrorCode::ConnectionAborted,
        Up::DatagramTooLarge => ErrorCode::DatagramTooLarge,
        Up::Other => ErrorCode::Unknown,
    }
}

/// Maps the p2 error code of upstream's bindings (same WIT enum, other type).
fn from_upstream_p2(code: wasmtime_wasi::p2::bindings::sockets::network::ErrorCode) -> ErrorCode {
    use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode as Up;
    match code {
        Up::Unknown => ErrorCode::Unknown,
        Up::AccessDenied => ErrorCode::AccessDenied,
        Up::NotSupported => ErrorCode::NotSupported,
        Up::InvalidArgument => ErrorCode::InvalidArgument,
        Up::OutOfMemory => ErrorCode::OutOfMemory,
        Up::Timeout => ErrorCode::Timeout,
        Up::ConcurrencyConflict => ErrorCode::ConcurrencyConflict,
        Up::NotInProgress => ErrorCode::NotInProgress,
        Up::WouldBlock => ErrorCode::WouldBlock,
        Up::InvalidState => ErrorCode::InvalidState,
        Up::NewSocketLimit => ErrorCode::NewSocketLimit,
        Up::AddressNotBindable => ErrorCode::AddressNotBindable,
        Up::AddressInUse => ErrorCode::AddressInUse,
        Up::RemoteUnreachable => ErrorCode::RemoteUnreachable,
        Up::ConnectionRefused => ErrorCode::ConnectionRefused,
        Up::ConnectionReset => ErrorCode::ConnectionReset,
        Up::ConnectionAborted => ErrorCode::ConnectionAborted,
        Up::DatagramTooLarge => ErrorCode::DatagramTooLarge,
        Up::NameUnresolvable => ErrorCode::NameUnresolvable,
        Up::TemporaryResolverFailure => ErrorCode::TemporaryResolverFailure,
        Up::PermanentResolverFailure => ErrorCode::PermanentResolverFailure,
    }
}

/// Maps an OS error from a real socket.
pub(crate) fn from_io(err: &std::io::Error) -> ErrorCode {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::AddrInUse => ErrorCode::AddressInUse,
        K::AddrNotAvailable => ErrorCode::AddressNotBindable,
        K::ConnectionAborted => ErrorCode::ConnectionAborted,
        K::ConnectionRefused => ErrorCode::ConnectionRefused,
        K::ConnectionReset | K::BrokenPipe => ErrorCode::ConnectionReset,
        K::InvalidInput => ErrorCode::InvalidArgument,
        K::NotConnected => ErrorCode::InvalidState,
        K::OutOfMemory => ErrorCode::OutOfMemory,
        K::PermissionDenied => ErrorCode::AccessDenied,
        K::TimedOut => ErrorCode::Timeout,
        K::Unsupported => ErrorCode::NotSupported,
        K::WouldBlock => ErrorCode::WouldBlock,
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => ErrorCode::RemoteUnreachable,
        _ => ErrorCode::Unknown,
    }
}

/// What `network-error-code` reports for an error carried by a stream.
pub(crate) fn stream_error_code(err: &wasmtime::Error) -> Option<ErrorCode> {
    if let Some(code) = err.downcast_ref::<ErrorCode>() {
        return Some(*code);
    }
    if let Some(code) = err.downcast_ref::<wasmtime_wasi::sockets::ErrorCode>() {
        return Some(from_upstream(*code));
    }
    err.downcast_ref::<std::io::Error>().map(from_io)
}
