//! The `hearth` binary: the command line is the library's (`cli.rs`), so that everything else stays private to it.

fn main() -> std::process::ExitCode {
    hearth::cli::main()
}
