//! HTTP GET with the `ureq` crate (plain HTTP, no TLS).
//!
//! ```text
//! ureq-client <url>
//! ```
//!
//! Prints `status <code>` and then `body <body>` (the body with one trailing
//! newline removed). Any status counts as success once the response arrived;
//! a failed request prints `error <kind> <message>` and exits 1.

use std::process::ExitCode;

use guest_util::say;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), None) = (args.next(), args.next()) else {
        say!("error InvalidInput usage: ureq-client <url>");
        return ExitCode::FAILURE;
    };
    // Report 4xx/5xx as a status like any other rather than as an error.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    say!("status {}", response.status().as_u16());
    match response.body_mut().read_to_string() {
        Ok(body) => {
            say!("body {}", body.strip_suffix('\n').unwrap_or(&body));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(e: ureq::Error) -> ExitCode {
    match e {
        ureq::Error::Io(io) => say!("error {:?} {io}", io.kind()),
        other => say!("error Http {other}"),
    }
    ExitCode::FAILURE
}
