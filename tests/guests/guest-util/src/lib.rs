//! Small helpers shared by the test guests.
//!
//! * [`say!`]: print one line to stdout and flush it at once (the tests read
//!   guest output line by line while the guest is still running).
//! * [`Fnv1a`]: streaming 64-bit FNV-1a hash, printed as 16 lowercase hex digits.
//! * [`XorShift`]: deterministic pseudo-random byte stream (xorshift64).

use std::fmt;

/// Prints one line to stdout and flushes it.
///
/// A broken stdout is not an error the guests can report anywhere, so write
/// failures are ignored rather than panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut out = ::std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

/// Streaming FNV-1a, 64-bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats as the 16-digit lowercase hex used on the wire (`<len> <hash>`).
impl fmt::Display for Fnv1a {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// xorshift64 (13, 7, 17). Its byte stream is the little-endian bytes of each
/// successive state, so the stream does not depend on how it is chunked as
/// long as callers use [`XorShift::fill`] with lengths that are multiples of 8
/// (only the final chunk may be shorter).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        XorShift(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        let mut h = Fnv1a::new();
        assert_eq!(h.to_string(), "cbf29ce484222325");
        h.update(b"a");
        assert_eq!(h.to_string(), "af63dc4c8601ec8c");
        let mut h = Fnv1a::new();
        h.update(b"foobar");
        assert_eq!(h.value(), 0x85944171f73967e8);
    }

    #[test]
    fn xorshift_chunking_is_irrelevant() {
        let mut whole = vec![0u8; 64];
        XorShift::new(42).fill(&mut whole);
        let mut parts = vec![0u8; 64];
        let mut rng = XorShift::new(42);
        let (a, b) = parts.split_at_mut(24);
        rng.fill(a);
        rng.fill(b);
        assert_eq!(whole, parts);
    }
}
