// Most of what the controller holds is small: the strings of cached objects.
// mimalloc keeps them in pages of one size each, with no header per block;
// glibc's malloc spends 8 to 27 bytes on each (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    arcadia_drift::cli::main()
}
