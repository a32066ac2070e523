//! The `portarium-st2` binary: everything lives in the library's [`portarium_st2::cli`].

fn main() -> std::process::ExitCode {
    portarium_st2::cli::main()
}
