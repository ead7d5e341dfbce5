//! `Policy::route` on any rules and addresses (the properties are in
//! `wasi_sockets_virt::fuzzing::route`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasi_sockets_virt::fuzzing::route::check(data);
});
