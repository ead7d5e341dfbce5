//! `bench-instantiate loophost|upstream PATH N [on-demand]`: instantiates a
//! wasi:http component N times (see `loophost_tests::instantiate`); run
//! under callgrind by the `instructions` benchmark, with `on-demand`
//! (valgrind cannot reserve the pooling allocator's address space).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (store, path, n, pooling) = match args.as_slice() {
        [store, path, n] => (store, path, n, true),
        [store, path, n, mode] if mode == "on-demand" => (store, path, n, false),
        _ => {
            eprintln!("usage: bench-instantiate loophost|upstream PATH N [on-demand]");
            std::process::exit(2);
        }
    };
    let store = match store.as_str() {
        "loophost" => loophost_tests::instantiate::Store::Loophost,
        _ => loophost_tests::instantiate::Store::Upstream,
    };
    let n = n.parse().unwrap_or(1);
    let times = loophost_tests::instantiate::times(store, std::path::Path::new(path), n, pooling);
    println!("instantiated {}", times.len());
}
