//! Per-case bookkeeping: soft checks that record a failure and carry on, and
//! hard setup steps (`must`) that abort the case with `Err`.

use wasip2::sockets::network::ErrorCode;

/// Result of a setup step; `Err` aborts the current case.
pub type R<T> = Result<T, String>;

/// A case body.
pub type CaseFn = fn(&mut Cx) -> R<()>;

/// Collected outcome of one case.
#[derive(Default)]
pub struct Cx {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// `ok` or `error(<code>)`, for messages.
pub fn show<T>(r: &Result<T, ErrorCode>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error({})", e.name()),
    }
}

fn show_codes(want: &[ErrorCode]) -> String {
    want.iter()
        .map(|e| format!("error({})", e.name()))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Unwraps a setup step or aborts the case with a message naming the step.
pub fn must<T>(what: &str, r: Result<T, ErrorCode>) -> R<T> {
    r.map_err(|e| format!("{what}: unexpected error({})", e.name()))
}

impl Cx {
    pub fn fail(&mut self, msg: impl Into<String>) {
        self.failures.push(msg.into());
    }

    pub fn note(&mut self, msg: impl Into<String>) {
        self.notes.push(msg.into());
    }

    /// Records `msg()` as a failure unless `ok`.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if !ok {
            self.fail(msg());
        }
        ok
    }

    pub fn check_eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) -> bool {
        if got != want {
            self.fail(format!("{what}: expected {want:?}, got {got:?}"));
            return false;
        }
        true
    }

    /// Expects `got` to be one of the error codes in `want`.
    pub fn expect_err<T>(&mut self, what: &str, got: Result<T, ErrorCode>, want: &[ErrorCode]) -> bool {
        match &got {
            Err(e) if want.contains(e) => true,
            _ => {
                self.fail(format!("{what}: expected {}, got {}", show_codes(want), show(&got)));
                false
            }
        }
    }

    /// Expects success; returns the value if there was one.
    pub fn expect_ok<T>(&mut self, what: &str, got: Result<T, ErrorCode>) -> Option<T> {
        match got {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(format!("{what}: expected ok, got error({})", e.name()));
                None
            }
        }
    }

    /// For operations that upstream expects to succeed but that touch a
    /// non-loopback address (e.g. the unspecified address `0.0.0.0` / `::`),
    /// which a restrictive policy may refuse with `access-denied`.
    /// Returns the value on success; on `access-denied` records a note.
    pub fn ok_or_denied<T>(&mut self, what: &str, got: Result<T, ErrorCode>) -> Option<T> {
        match got {
            Ok(v) => Some(v),
            Err(ErrorCode::AccessDenied) => {
                self.note(format!(
                    "{what}: error(access-denied) accepted (policy); upstream expects ok"
                ));
                None
            }
            Err(e) => {
                self.fail(format!(
                    "{what}: expected ok (or error(access-denied) by policy), got error({})",
                    e.name()
                ));
                None
            }
        }
    }

    /// Like `expect_err`, additionally accepting `access-denied` (with a note)
    /// for cases whose address is outside the virtual loopback.
    pub fn err_or_denied<T>(&mut self, what: &str, got: Result<T, ErrorCode>, want: &[ErrorCode]) -> bool {
        match &got {
            Err(e) if want.contains(e) => {
                self.note(format!("{what}: got error({}) (upstream expectation)", e.name()));
                true
            }
            Err(ErrorCode::AccessDenied) => {
                self.note(format!(
                    "{what}: got error(access-denied) (policy); upstream expects {}",
                    show_codes(want)
                ));
                true
            }
            _ => {
                self.fail(format!(
                    "{what}: expected {} (or error(access-denied) by policy), got {}",
                    show_codes(want),
                    show(&got)
                ));
                false
            }
        }
    }
}
