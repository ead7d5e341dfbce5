//! The fuzz targets' properties, on stable and in seconds: every input of
//! the seed corpus and every saved failure (`fuzz/corpus/<target>`,
//! `fuzz/artifacts/<target>`), then a few thousand inputs from a fixed-seed
//! generator. Finding new inputs is `scripts/fuzz.sh`'s job (libFuzzer,
//! nightly); this keeps what it found from coming back.

use std::path::{Path, PathBuf};

/// The files of `fuzz/corpus/<target>` and `fuzz/artifacts/<target>`.
fn saved_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = loophost_tests::repo_root().join("fuzz");
    let mut inputs = Vec::new();
    for dir in [fuzz.join("corpus").join(target), fuzz.join("artifacts").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                inputs.push((path, bytes));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Inputs from a fixed seed: the same ones every run.
struct Inputs(fastrand::Rng);

impl Inputs {
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.0.usize(..=max_len);
        (0..len).map(|_| self.0.u8(..)).collect()
    }

    /// `seed` with a few bytes flipped, inserted or cut off.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for _ in 0..self.0.usize(1..=4) {
            let at = self.0.usize(..=out.len());
            match self.0.u8(..3) {
                0 if at < out.len() => out[at] = self.0.u8(..),
                1 => out.insert(at, b"=[]\"{}.,\n#x1"[self.0.usize(..12)]),
                _ => out.truncate(at),
            }
        }
        out
    }
}

fn replay(target: &str, check: impl Fn(&[u8]), generated: impl Fn(&mut Inputs) -> Vec<u8>) {
    let saved = saved_inputs(target);
    assert!(!saved.is_empty(), "no seed corpus for {target} in fuzz/corpus/{target}");
    for (path, bytes) in &saved {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    let mut inputs = Inputs(fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64));
    for n in 0..3000 {
        let input = generated(&mut inputs);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        assert!(outcome.is_ok(), "{target}: generated input {n} fails: {input:?}");
    }
}

#[test]
fn socket_ops() {
    replay("socket_ops", wasi_sockets_virt::fuzzing::run, |g| g.bytes(240));
}

#[test]
fn policy_route() {
    replay("policy_route", wasi_sockets_virt::fuzzing::route::check, |g| {
        g.bytes(400)
    });
}

/// The manifest parser on any text: no panic, and every error names the file.
fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(err) = loophost::manifest::parse("fuzz.toml", Path::new("/nonexistent"), text) {
        let message = format!("{err:#}");
        assert!(
            message.starts_with("fuzz.toml"),
            "an error that does not name the file: {message}"
        );
    }
}

#[test]
fn manifest_parse() {
    let seeds: Vec<Vec<u8>> = saved_inputs("manifest").into_iter().map(|(_, b)| b).collect();
    replay("manifest", manifest, |g| {
        let seed = &seeds[g.0.usize(..seeds.len())];
        g.mutate(seed)
    });
}
