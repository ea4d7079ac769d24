//! `kubectl drift`: the kubectl plugin (see `arcadia_drift::plugin`).

fn main() -> std::process::ExitCode {
    arcadia_drift::plugin::main()
}
