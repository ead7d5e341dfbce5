//! Prints the environment variables it is asked about.
//!
//! ```text
//! printenv NAME...
//! ```
//!
//! Prints `NAME=value` for each one that is set and `unset NAME` for each
//! one that is not, then exits 0.

use guest_util::say;

fn main() {
    for name in std::env::args().skip(1) {
        match std::env::var(&name) {
            Ok(value) => say!("{name}={value}"),
            Err(_) => say!("unset {name}"),
        }
    }
}
