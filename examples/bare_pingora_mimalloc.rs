//! `bare_pingora` with mimalloc as the global allocator, as tether uses: the difference between
//! the two rows of `make bench` is the allocator alone.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bare_pingora.rs"]
mod bare;

fn main() {
    bare::main();
}
