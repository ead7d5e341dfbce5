//! The manifest parser on any text: no panic, and every error names the file
//! (replayed on stable by tests/fuzz_replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(err) = loophost::manifest::parse("fuzz.toml", std::path::Path::new("/nonexistent"), text) {
        let message = format!("{err:#}");
        assert!(message.starts_with("fuzz.toml"), "an error that does not name the file: {message}");
    }
});
