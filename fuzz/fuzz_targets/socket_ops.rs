//! Any sequence of TCP socket operations against the virtual network (see
//! `wasi_sockets_virt::fuzzing`): no panic, caps hold, nothing leaks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasi_sockets_virt::fuzzing::run(data);
});
