//! The `portarium-st2` binary: everything lives in the library's [`portarium_st2::cli`].

// Set in the binary, not the library, so an embedder keeps its own choice. glibc's malloc was
// about a third of the adapter's CPU per dispatch (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portarium_st2::cli::main()
}
