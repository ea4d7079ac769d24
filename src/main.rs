fn main() -> std::process::ExitCode {
    arcadia_drift::cli::main()
}
