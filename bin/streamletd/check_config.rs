//! `streamletd check-config`: reads a configuration as the daemon would and
//! says whether it can be used.

use std::path::PathBuf;
use std::process::ExitCode;

use streamlet_config::Config;

/// What `--help` says after the options.
pub const AFTER_HELP: &str = "\
Give the file either way: `streamletd check-config FILE` or `streamletd check-config --config FILE` \
(the flag the daemon takes it with, so a service's command line can be checked as it is).
On success it prints the file and its pools. Otherwise it prints each problem on a line of its own, \
as FILE:LINE: key `KEY`: what is wrong and what to write, every missing key at once, and exits with 64.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file to check
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// The configuration file to check, given as the daemon takes it (the same as FILE)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Args {
    /// The file to check: FILE, `--config FILE` here, or `--config FILE`
    /// before the command; `None` if none names one.
    pub fn file(self, before: Option<PathBuf>) -> Result<PathBuf, String> {
        match (self.file.or(self.config), before) {
            (Some(here), Some(before)) if here != before => {
                Err(format!("two files to check ({} and {}): give one", before.display(), here.display()))
            }
            (Some(file), _) | (None, Some(file)) => Ok(file),
            (None, None) => {
                Err("which file? give it as `streamletd check-config FILE` or `streamletd check-config --config FILE`"
                    .to_owned())
            }
        }
    }
}

/// Checks `file`: 0 and its pools if it can be used, else 64 and each problem.
pub fn run(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            let n = config.pools.len();
            let names = config.pools.keys().cloned().collect::<Vec<_>>().join(", ");
            println!("{}: ok ({n} pool{}: {names})", file.display(), if n == 1 { "" } else { "s" });
            ExitCode::SUCCESS
        }
        Err(e) => super::bad_config(&e),
    }
}
