//! `exec`: runs a command for each stream, inetd-style, inside the
//! streamlet's sandbox (its cgroup, namespaces, uid and seccomp filter cover
//! the command too). The stream is the command's stdin and stdout.
//!
//! - Interposed (the default): the streamlet copies the bytes between the
//!   connection and the command's pipes, so they are counted (and can be
//!   paced).
//! - `direct`: the connection itself is the command's stdin and stdout: no
//!   copy, and no byte counts; only the kernel paces it.
//!
//! The command's environment is `STREAM_ID`, `STREAM_POOL`, `STREAM_TENANT`,
//! `STREAM_RATE` (bytes per second, 0 for no limit), `STREAM_LABEL_<KEY>` for
//! each label (the key upper-cased, other than letters and digits as `_`),
//! and a `PATH`. Its stderr is the streamlet's, which the daemon logs. Its
//! exit ends the stream: `completed` for status 0, else `command_exited` with
//! the status.

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::Ordering;

use streamlet_proto::ExitCause;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::handler::{BoxFuture, Handler, HandlerError, HandlerResult, StreamContext};
use crate::stream::Stream;

/// The `PATH` a command runs with.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone)]
pub struct Exec {
    command: Vec<String>,
    direct: bool,
}

impl Exec {
    /// `command[0]` is the program (an absolute path), the rest its arguments.
    pub fn new(command: Vec<String>, direct: bool) -> Result<Exec, String> {
        match command.first() {
            Some(program) if program.starts_with('/') => Ok(Exec { command, direct }),
            Some(program) => Err(format!("exec command {program:?} is not an absolute path")),
            None => Err("exec command is empty".into()),
        }
    }

    fn command(&self, ctx: &StreamContext) -> Command {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .env_clear()
            .env("PATH", PATH)
            .env("STREAM_ID", ctx.stream.0.to_string())
            .env("STREAM_POOL", &*ctx.pool)
            .env("STREAM_TENANT", &ctx.tenant)
            .env("STREAM_RATE", ctx.rate.load(Ordering::Relaxed).to_string())
            .stderr(Stdio::inherit())
            // A group of its own, so that what it starts goes with it.
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &ctx.labels {
            let key: String =
                key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            command.env(format!("STREAM_LABEL_{key}"), value);
        }
        command
    }
}

impl Handler for Exec {
    fn serve(&self, stream: Stream, ctx: StreamContext) -> BoxFuture<HandlerResult> {
        let mut command = self.command(&ctx);
        let program = self.command[0].clone();
        let direct = self.direct;
        Box::pin(async move {
            let cannot = |e: std::io::Error| HandlerError::Failed(format!("cannot run {program}: {e}"));
            let status = if direct {
                // The command reads and writes the socket itself, blocking.
                let socket = stream.as_fd().try_clone_to_owned()?;
                streamlet_proto::channel::set_nonblocking(socket.as_fd(), false)?;
                let output = socket.try_clone()?;
                let mut child =
                    command.stdin(Stdio::from(socket)).stdout(Stdio::from(output)).spawn().map_err(cannot)?;
                let _claim = crate::runtime::orphans::claim(child.id());
                let _group = Group(child.id());
                let status = child.wait().await?;
                drop(stream);
                status
            } else {
                let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(cannot)?;
                let _claim = crate::runtime::orphans::claim(child.id());
                let group = Group(child.id());
                let (mut stdin, mut stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
                let (mut from_client, mut to_client) = tokio::io::split(stream);
                // Client to command, until the client's end of input (then the
                // command's stdin closes) or the command's exit.
                let feed = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
                    let _ = stdin.shutdown().await;
                });
                let (status, copied) = {
                    let copy = tokio::io::copy(&mut stdout, &mut to_client);
                    tokio::pin!(copy);
                    tokio::select! {
                        copied = &mut copy => {
                            // Its output ended, or the client left: a command
                            // still writing to a client that left is stopped.
                            if copied.is_err() {
                                group.kill();
                            }
                            (child.wait().await?, copied)
                        }
                        status = child.wait() => {
                            // Its exit ends the stream: what it started goes
                            // too (it may hold the output open), then what is
                            // in the pipe is delivered.
                            let status = status?;
                            group.kill();
                            (status, copy.await)
                        }
                    }
                };
                feed.abort();
                copied?;
                to_client.shutdown().await?;
                status
            };
            match exit_cause(status) {
                None => Ok(()),
                Some(cause) => Err(HandlerError::Exited(cause)),
            }
        })
    }
}

/// A command's process group: killed when the stream ends, however it ends
/// (the handler's future dropped by a `Close` included).
struct Group(Option<u32>);

impl Group {
    fn kill(&self) {
        if let Some(pgid) = self.0.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
            // SAFETY: kill(2) of a process group this handler created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `None` for a clean exit, else how the command ended.
fn exit_cause(status: std::process::ExitStatus) -> Option<ExitCause> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(code), _) => Some(ExitCause::Exited { code }),
        (None, Some(signal)) => Some(ExitCause::Signaled { signal, core_dumped: status.core_dumped() }),
        (None, None) => Some(ExitCause::Exited { code: -1 }),
    }
}
