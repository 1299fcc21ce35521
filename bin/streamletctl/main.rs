//! `streamletctl`: asks `streamletd` about its pools, streamlets and streams,
//! closes a stream, or opens one and connects it to stdin and stdout.

// Everything printed goes through `out`, which escapes what others wrote.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cmd;
mod out;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamlet_client::proto::socket_path::resolve_socket_path;
use streamlet_client::proto::{Encoding, StreamId, WorkerId};
use streamlet_client::{error_chain, Client};

#[derive(Debug, Parser)]
#[command(name = "streamletctl", version, about = "Ask streamletd about its pools, streamlets and streams")]
struct Cli {
    /// The daemon's control socket [default: $STREAMLET_SOCKET, then
    /// /run/streamlet/streamletd.sock for root, $XDG_RUNTIME_DIR/streamlet/streamletd.sock
    /// otherwise, or /tmp/streamlet-UID/streamletd.sock without XDG_RUNTIME_DIR]
    #[arg(long, global = true, env = "STREAMLET_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON instead of tables: an array for a listing, an object for one thing, one object a
    /// line for a stream of events (docs/json.md has each command's shape)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon and its pools
    Status,
    /// Each pool's streamlets now, and how many the autoscaler and the forecast want
    Pools,
    /// A live view: pools, streamlets (CPU, memory, streams, rates, restarts) and events; q quits.
    /// Without a terminal on stdout, one snapshot (with --json, as JSON)
    Top,
    /// The latest lifecycle events (streamlets spawned, ready, died; streams opened, ended, moved;
    /// scaling), and with -f each new one as it happens
    Events {
        /// Keep printing new events until Ctrl-C
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the latest to print first (the daemon keeps 1024)
        #[arg(long, value_name = "N", default_value_t = 20)]
        recent: u32,
    },
    /// The streamlets
    Workers {
        /// Only this pool's
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// The open streams
    Streams {
        /// Only this pool's
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// End a stream
    Close {
        /// The stream's id, as `streams` shows it
        stream: u64,
    },
    /// Open a stream to a pool and connect it to stdin and stdout, like netcat
    Open {
        /// The pool to place the stream in
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// The tenant to account the stream to [default: default]
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// Higher wins when bandwidth is short (0-255) [default: 0]
        #[arg(long, value_name = "N")]
        priority: Option<u8>,
        /// The least bandwidth the stream needs, like 1Mbps, "1 Mbit/s", 125kB/s or 1MiB/s (with --max)
        #[arg(long, value_name = "RATE", value_parser = parse_rate, requires = "max")]
        min: Option<u64>,
        /// The most bandwidth the stream can use, like 8Mbps or 1MB/s (with --min)
        #[arg(long, value_name = "RATE", value_parser = parse_rate, requires = "min")]
        max: Option<u64>,
        /// The region the client is nearest to (for geo pools)
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// Wait this long for room (like 30s) instead of being refused at once
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        wait: Option<u64>,
    },
    /// One streamlet: its state, streams, usage and its slot's last deaths
    Worker {
        /// The streamlet's id, as `workers` shows it
        worker: u64,
    },
    /// Stop giving a streamlet new streams; it exits when empty, or is killed at the timeout
    Drain {
        /// The streamlet's id
        worker: u64,
        /// Kill it after this long (like 30s) if streams remain [default: the daemon's shutdown_timeout]
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        timeout: Option<u64>,
    },
    /// Kill a streamlet now; its slot is filled again at once
    Kill {
        /// The streamlet's id
        worker: u64,
    },
    /// Read the daemon's configuration file again and apply it without dropping a stream
    Reload,
    /// Set a pool's bounds (workers.min, workers.max) until the next reload
    Scale {
        /// The pool
        pool: String,
        /// The fewest streamlets to keep
        #[arg(long, value_name = "N")]
        min: Option<u32>,
        /// The most streamlets to allow
        #[arg(long, value_name = "N")]
        max: Option<u32>,
    },
    /// Replace a pool's streamlets one at a time (drain, replace, wait until ready, next)
    Restart {
        /// The pool
        pool: String,
    },
    /// Capacity, allocated and free bandwidth, and open streams (all, and those with a rate), per
    /// host, pool and tenant
    Quota,
    /// Hold a lease (bandwidth and a tenant slot, no stream) until end of input or Ctrl-C
    Lease {
        /// The pool whose bandwidth to hold
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// The tenant to account it to [default: default]
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// Higher wins when bandwidth is short (0-255) [default: 0]
        #[arg(long, value_name = "N")]
        priority: Option<u8>,
        /// The least bandwidth needed, like 1Mbit
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        min: u64,
        /// The most bandwidth usable, like 8Mbit
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        max: u64,
        /// How long it lives without a refresh, like 30s (it is refreshed at a third of it)
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: u64,
    },
    /// Replay a trace through a pool's placement, quota and scaling rules (no daemon needed)
    Simulate(cmd::simulate::Args),
    /// Print a shell completion script: streamletctl completions bash > /etc/bash_completion.d/streamletctl
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): streamletctl man > /usr/local/share/man/man1/streamletctl.1
    Man,
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: write a whole number with ms, s or m, like \"30s\"");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(n),
        "s" => Ok(n * 1000),
        "m" => Ok(n * 60_000),
        _ => Err(bad()),
    }
}

/// The daemon's own parser, so a rate means the same here and in its config.
fn parse_rate(text: &str) -> Result<u64, streamlet_client::proto::units::RateError> {
    streamlet_client::proto::units::parse_rate(text)
}

/// The command line's grammar, with `--socket` hidden from the help of the
/// commands that talk to no daemon (`simulate`, `completions`, `man`): each
/// gets a hidden copy of its own, which clap then does not replace with the
/// global one (so it is still accepted, and still ignored).
fn command() -> clap::Command {
    let command = <Cli as clap::CommandFactory>::command();
    let socket = command.get_arguments().find(|a| a.get_id() == "socket").cloned().expect("--socket is defined");
    let hidden = move |sub: clap::Command| sub.arg(socket.clone().global(false).hide(true));
    command
        .mut_subcommand("simulate", hidden.clone())
        .mut_subcommand("completions", hidden.clone())
        .mut_subcommand("man", hidden)
}

fn main() -> ExitCode {
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            out::error(&format!("streamletctl: starting the runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // `open` reads stdin on a blocking thread that may still be waiting for input.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            out::error(&format!("streamletctl: {}", error_chain(err.as_ref())));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // These need no daemon.
    match &cli.command {
        Command::Simulate(args) => return cmd::simulate::run(args, cli.json),
        Command::Completions { .. } | Command::Man if cli.json => {
            anyhow::bail!("--json: completions and man print a script or a manual page, never JSON; leave --json out")
        }
        Command::Completions { shell } => {
            let mut command = command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "streamletctl", &mut script);
            return out::generated(&script);
        }
        Command::Man => {
            let command = command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            return out::generated(&page);
        }
        _ => {}
    }
    let socket = resolve_socket_path(cli.socket, None);
    let mut client = Client::connect_with(&socket, Encoding::Postcard, "streamletctl").await?;
    match cli.command {
        Command::Status => cmd::status::run(&mut client, cli.json).await,
        Command::Pools => cmd::pools::run(&mut client, cli.json).await,
        Command::Top => cmd::top::run(&mut client, &socket, cli.json).await,
        Command::Events { follow, recent } => cmd::events::run(&mut client, recent, follow, cli.json).await,
        Command::Workers { pool } => cmd::workers::run(&mut client, pool, cli.json).await,
        Command::Streams { pool } => cmd::streams::run(&mut client, pool, cli.json).await,
        Command::Close { stream } => cmd::close::run(&mut client, StreamId(stream), cli.json).await,
        Command::Open { pool, tenant, priority, min, max, region, wait } => {
            let rate = min.zip(max).map(|(min, max)| streamlet_client::proto::RateRequest { min, max });
            let request = streamlet_client::proto::OpenRequest {
                pool,
                tenant,
                labels: Default::default(),
                region,
                priority,
                rate,
                wait_ms: wait,
            };
            cmd::open::run(&mut client, request, cli.json).await
        }
        Command::Quota => cmd::quota::run(&mut client, cli.json).await,
        Command::Worker { worker } => cmd::monitor::worker(&mut client, WorkerId(worker), cli.json).await,
        Command::Drain { worker, timeout } => {
            cmd::monitor::drain(&mut client, WorkerId(worker), timeout, cli.json).await
        }
        Command::Kill { worker } => cmd::monitor::kill(&mut client, WorkerId(worker), cli.json).await,
        Command::Restart { pool } => cmd::monitor::restart(&mut client, pool, cli.json).await,
        Command::Reload => cmd::monitor::reload(&mut client, cli.json).await,
        Command::Scale { pool, min, max } => cmd::monitor::scale(&mut client, &pool, min, max, cli.json).await,
        Command::Lease { pool, tenant, priority, min, max, ttl } => {
            let rate = streamlet_client::proto::RateRequest { min, max };
            let request = streamlet_client::proto::LeaseRequest { pool, tenant, priority, rate, ttl_ms: ttl };
            cmd::lease::run(&mut client, request, cli.json).await
        }
        Command::Simulate(_) | Command::Completions { .. } | Command::Man => {
            unreachable!("answered before connecting")
        }
    }
}
