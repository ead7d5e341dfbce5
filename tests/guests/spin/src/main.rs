//! Computes forever and never calls the host: `spin`.
//!
//! The host must still be able to run other guests next to it and to stop it.

fn main() {
    println!("spinning");
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
