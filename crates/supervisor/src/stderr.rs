//! A streamlet's stderr: a pipe the daemon reads, so a streamlet never holds
//! the daemon's own stderr (a terminal, a log file, the journal). Each line
//! goes to the daemon's log with the streamlet's id, cut at
//! [`MAX_LINE`] bytes and at most [`LINES_PER_SECOND`] lines a second, so a
//! chatty or hostile streamlet cannot flood the log; past them (or past
//! [`BYTES_PER_SECOND`], newlines or not) the daemon stops reading until the
//! second is over, so neither can it keep the daemon's thread busy reading
//! what it drops.
//!
//! A line is any bytes: it is logged escaped ([`escape_bytes`]), a control
//! character as `\x1b`, `\r`, `\u{9b}`, a byte that is not UTF-8 as `\x9b`,
//! so the log shows exactly what was written and nothing in it reaches the
//! operator's terminal. (The log's writer escapes every record as well.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use streamlet_proto::channel::set_nonblocking;
use streamlet_proto::escape::escape_bytes;
use streamlet_proto::WorkerId;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub const MAX_LINE: usize = 512;
pub const LINES_PER_SECOND: u32 = 20;
/// Bytes read from a streamlet's stderr per second, at most (lines or not:
/// a streamlet that never writes a newline is held to this too).
pub const BYTES_PER_SECOND: usize = 64 * 1024;

/// A pipe: (read end for the daemon, write end for the streamlet).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Logs the streamlet's stderr until it closes (when the streamlet is gone).
pub async fn forward(worker: WorkerId, pool: String, read: OwnedFd) {
    if set_nonblocking(std::os::fd::AsFd::as_fd(&read), true).is_err() {
        return;
    }
    // SAFETY: an OwnedFd keeps its number until dropped with the AsyncFd.
    let Ok(fd) = (unsafe { AsyncFd::register(read) }) else { return };
    let mut buf = vec![0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let mut window = Instant::now();
    let (mut lines, mut dropped) = (0u32, 0u64);
    let mut read_in_window = 0usize;
    loop {
        let n = fd
            .async_io(Interest::READABLE, |inner| {
                // SAFETY: buf is a live, writable buffer of the length given.
                let n = unsafe { libc::read(inner.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
            .await;
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if window.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                tracing::warn!(%worker, pool, dropped, "streamlet wrote too much to stderr; lines dropped");
            }
            window = Instant::now();
            (lines, dropped, read_in_window) = (0, 0, 0);
        }
        read_in_window += n;
        for &byte in &buf[..n] {
            if byte != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(byte);
                }
                continue;
            }
            if lines < LINES_PER_SECOND {
                lines += 1;
                tracing::warn!(%worker, pool, "streamlet: {}", escape_bytes(&line));
            } else {
                dropped += 1;
            }
            line.clear();
        }
        // Past its lines or its bytes for this second, the rest of the
        // second costs the daemon nothing: it stops reading, and a streamlet
        // that goes on writing blocks on its own full pipe.
        if dropped > 0 || read_in_window >= BYTES_PER_SECOND {
            tokio::time::sleep_until((window + Duration::from_secs(1)).into()).await;
        }
    }
}
