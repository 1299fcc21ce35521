//! `streamletd`: the streamlet supervisor daemon.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamlet_proto::socket_path::resolve_socket_path;
use streamlet_supervisor::Config;

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "streamletd", version, about = "Supervisor for sandboxed stream workers (streamlets)")]
struct Cli {
    /// TOML configuration; without it, the embedded default (one echo pool).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Control socket [default: $STREAMLET_SOCKET, daemon.socket, then
    /// /run/streamlet/streamletd.sock for root or
    /// $XDG_RUNTIME_DIR/streamlet/streamletd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file and exit: 0 if it is valid, 64 if not.
    CheckConfig { file: PathBuf },
    /// A narrated tour: a daemon on the embedded default, a gateway, streams,
    /// a streamlet killed and replaced; leaves nothing behind.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; its in-process gateway logs only trouble.
    init_logging(if matches!(cli.command, Some(Command::Demo)) { "warn" } else { "info" });
    match cli.command {
        Some(Command::CheckConfig { file }) => match Config::load(&file) {
            Ok(config) => {
                let n = config.pools.len();
                println!("{}: ok ({n} pool{}: {})", file.display(), if n == 1 { "" } else { "s" }, pool_names(&config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("streamletd: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Some(Command::Demo) => demo::run(),
        None => daemon(cli.config, cli.socket),
    }
}

fn daemon(config: Option<PathBuf>, socket: Option<PathBuf>) -> ExitCode {
    let config = match config {
        Some(path) => Config::load(&path),
        None => Ok(Config::embedded()),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("streamletd: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let socket = resolve_socket_path(socket, config.daemon.socket.clone());
    // One thread: the daemon's work per stream is a few syscalls, and the
    // thread that forks streamlets must live as long as the daemon
    // (PR_SET_PDEATHSIG fires when the forking thread exits).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("streamletd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pools = pool_names(&config);
    let source = config.source.clone();
    let result = runtime.block_on(streamlet_supervisor::run(config, socket, |path| {
        println!(
            "streamletd: listening on {} (pid {}, config {source}, pools {pools})",
            path.display(),
            std::process::id()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamletd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pool_names(config: &Config) -> String {
    config.pools.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Logs go to stderr; `STREAMLET_LOG` sets the filter (default `default`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STREAMLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
