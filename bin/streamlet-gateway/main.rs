//! `streamlet-gateway`: accepts TCP connections and hands each one to a
//! streamlet of one pool through `streamletd`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use streamlet_client::error_chain;
use streamlet_client::gateway::Gateway;
use streamlet_client::proto::escape::{escape_line, LogFormat, LogWriter};
use streamlet_client::proto::socket_path::resolve_socket_path;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "streamlet-gateway", version, about = "Hand TCP connections to a streamletd pool")]
struct Args {
    /// The address to accept connections on, such as 127.0.0.1:7000
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The pool to place connections in
    #[arg(long, value_name = "POOL")]
    pool: String,
    /// The tenant to account the streams to [default: default]
    #[arg(long, value_name = "TENANT")]
    tenant: Option<String>,
    /// Opens sent to the daemon before their replies come, at most (1 to 1024)
    #[arg(long, value_name = "N", default_value_t = streamlet_client::gateway::DEFAULT_IN_FLIGHT)]
    in_flight: usize,
    /// Label each stream with `peer`, the client's address
    #[arg(long)]
    peer_label: bool,
    /// The daemon's control socket [default: as streamletctl]
    #[arg(long, env = "STREAMLET_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_env("STREAMLET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Records quote what the daemon and clients wrote: each is escaped whole
    // (SECURITY.md, "Output to terminals and logs"), colour codes included,
    // so there are none.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter::new(std::io::stderr(), LogFormat::Text))
        .with_ansi(false)
        .init();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("streamlet-gateway: {}", escape_line(&error_chain(err.as_ref())));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let socket = resolve_socket_path(args.socket, None);
    let listener = TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the listening address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "streamlet-gateway: listening on {addr}, pool {}, daemon {}", args.pool, socket.display())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    Gateway::new(socket, args.pool)
        .tenant(args.tenant)
        .in_flight(args.in_flight)
        .peer_label(args.peer_label)
        .run(listener)
        .await?;
    Ok(())
}
