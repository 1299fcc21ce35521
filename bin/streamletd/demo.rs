//! `streamletd demo`.

pub fn run() -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
