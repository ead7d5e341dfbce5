//! `bench-instantiate loophost|upstream PATH N`: instantiates a wasi:http
//! component N times (see `loophost_tests::instantiate`); run under
//! callgrind by the `instructions` benchmark.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, path, n] = args.as_slice() else {
        eprintln!("usage: bench-instantiate loophost|upstream PATH N");
        std::process::exit(2);
    };
    let store = match store.as_str() {
        "loophost" => loophost_tests::instantiate::Store::Loophost,
        _ => loophost_tests::instantiate::Store::Upstream,
    };
    let n = n.parse().unwrap_or(1);
    let times = loophost_tests::instantiate::times(store, std::path::Path::new(path), n);
    println!("instantiated {}", times.len());
}
