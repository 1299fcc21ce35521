//! `streamletd`: the streamlet supervisor daemon.

mod check_config;
mod demo;
mod journald;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use streamlet_proto::socket_path::resolve_socket_path;
use streamlet_supervisor::Config;

/// Exit code for a configuration that cannot be used (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "streamletd", version, about = "Supervisor for sandboxed stream workers (streamlets)")]
struct Cli {
    /// TOML configuration to run with; without it, the embedded default (one
    /// echo pool).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket [default: $STREAMLET_SOCKET, daemon.socket, then
    /// /run/streamlet/streamletd.sock for root,
    /// $XDG_RUNTIME_DIR/streamlet/streamletd.sock for other users, or
    /// /tmp/streamlet-UID/streamletd.sock without XDG_RUNTIME_DIR].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// How the log is written to stderr: human-readable lines, or one JSON
    /// object a line. Under systemd (stderr is the journal, $JOURNAL_STREAM)
    /// the log goes to journald with its fields instead.
    #[arg(long, value_enum, env = "STREAMLET_LOG_FORMAT", default_value = "human")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file and exit: 0 if it is valid, 64 and each
    /// problem's line, key and fix if not.
    #[command(after_help = check_config::AFTER_HELP)]
    CheckConfig(check_config::Args),
    /// A narrated tour: a daemon on the embedded default, a gateway, streams,
    /// a streamlet killed and replaced; leaves nothing behind.
    Demo,
    /// Print the seccomp policy every streamlet runs under, as a table.
    SeccompPolicy,
}

fn main() -> ExitCode {
    // Started as the built-in worker (see `streamlet_supervisor::exe`): be
    // one, before anything of the daemon's runs.
    if is_builtin_worker() {
        return streamlet_worker::run_main(streamlet_worker::builtin_handler);
    }
    let cli = Cli::parse();
    // The demo narrates on stdout; its in-process gateway logs only trouble.
    logging::init(if matches!(cli.command, Some(Command::Demo)) { "warn" } else { "info" }, cli.log_format);
    match cli.command {
        Some(Command::CheckConfig(args)) => match args.file(cli.config) {
            Ok(file) => check_config::run(&file),
            Err(why) => {
                let mut command = Cli::command();
                command.build();
                let check = command.find_subcommand_mut("check-config").expect("check-config is a command");
                check.error(clap::error::ErrorKind::MissingRequiredArgument, why).exit()
            }
        },
        Some(Command::Demo) => demo::run(),
        Some(Command::SeccompPolicy) => {
            print!("{}", streamlet_sandbox::seccomp::describe());
            ExitCode::SUCCESS
        }
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
        Err(e) => return bad_config(&e),
    };
    let socket = resolve_socket_path(socket, config.daemon.socket.clone());
    ensure_standard_fds();
    raise_nofile_limit();
    // Not dumpable: no process of the daemon's user (a streamlet, when the
    // daemon cannot give them users of their own) may open its /proc/PID/mem,
    // ptrace it or read its descriptors.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
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

/// Whether this process was started as a streamlet: `argv[0]` names the
/// built-in worker.
fn is_builtin_worker() -> bool {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    std::path::Path::new(&arg0).file_name() == Some(std::ffi::OsStr::new(streamlet_supervisor::exe::BUILTIN_ARG0))
}

/// Opens `/dev/null` on any of descriptors 0, 1 and 2 that is closed, so no
/// socket the daemon makes later can land on one (and be clobbered when a
/// streamlet's stdio is set up).
fn ensure_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            // SAFETY: open(2) of a constant path; the lowest free descriptor,
            // which is `fd`, is taken for good.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// The daemon holds a descriptor per stream: raise the soft limit to the hard
/// one (systemd's default soft limit of 1024 would stop it near 1000 streams).
fn raise_nofile_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        eprintln!(
            "streamletd: cannot raise the open-file limit from {}: {}",
            limit.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
}

/// Each problem of a configuration on a line of its own.
fn bad_config(e: &streamlet_supervisor::ConfigError) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("streamletd: {line}");
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn pool_names(config: &Config) -> String {
    config.pools.keys().cloned().collect::<Vec<_>>().join(", ")
}
