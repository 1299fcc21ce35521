//! `streamlet-worker`: one sandboxed streamlet, started by `streamletd`.

fn main() -> std::process::ExitCode {
    streamlet_worker::run_main(streamlet_worker::builtin_handler)
}
