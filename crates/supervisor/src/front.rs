//! The daemon's own front door: a pool with `listen` takes its TCP clients
//! itself, with no gateway in between. Each accepted connection is opened as
//! a stream of the pool's `listen_tenant`, through the same `Core::open` a
//! gateway's `open` goes through (admission, placement, pacing), and has no
//! owner connection: a refusal closes it.
//!
//! The listeners are bound (or taken from what systemd passed, by
//! `FileDescriptorName=`) before the daemon says it is ready, so a bad
//! address stops the start with its reason. Each runs as one task on the
//! event loop: on each wakeup it takes every connection already queued, up
//! to [`ACCEPT_BATCH`] and to the room the pool's ready streamlets have,
//! and opens them under one lock. A pool with no room accepts nothing:
//! clients wait in the kernel's queue ([`BACKLOG`]), as they would for a
//! busy server, and go on once a stream ends or a streamlet is ready
//! (looked at every [`ROOM_POLL`]), instead of being closed.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::{sock, ErrorCode, OpenRequest};
use tokio::io::unix::AsyncFd;

use crate::config::{Config, Listen};
use crate::context::Daemon;
use crate::core::OpenOutcome;
use crate::validate::Open;

/// Connections taken from a listener's queue per wakeup, at most: the loop
/// serves its other work between batches.
pub const ACCEPT_BATCH: usize = 64;

/// The listen backlog of a socket the daemon binds.
pub const BACKLOG: u32 = 4096;

/// How often a pool with no room is looked at again.
pub const ROOM_POLL: Duration = Duration::from_millis(5);

/// How long accepting pauses after the process ran out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One listening socket of one pool.
#[derive(Debug)]
pub struct FrontDoor {
    pub pool: String,
    /// Where it listens, as configured.
    pub place: Listen,
    /// Where it listens, as bound (the port given for port 0).
    pub local: SocketAddr,
    listener: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("pool {pool}: cannot listen on {place}: {source}")]
    Bind { pool: String, place: Listen, source: io::Error },
    #[error("pool {pool}: listens on {place}, but systemd passed no socket named {name} (passed: {passed}); name it with FileDescriptorName={name} in the socket unit")]
    NotPassed { pool: String, place: Listen, name: String, passed: String },
    #[error("pool {pool}: the socket systemd passed as {name} is not a listening TCP socket (the socket unit's ListenStream= must be an address and port)")]
    NotTcp { pool: String, name: String },
    #[error("systemd passed sockets no pool listens on: {0} (name each in a pool's listen = [\"fd:NAME\"], or remove it from the socket unit)")]
    Unclaimed(String),
}

/// The pools' listening sockets: bound, or taken by name from what systemd
/// passed (the control socket already taken out). A passed socket no pool
/// names is an error: its clients would wait for ever.
pub fn open_doors(config: &Config, mut passed: Vec<(String, OwnedFd)>) -> Result<Vec<FrontDoor>, FrontError> {
    let mut doors = Vec::new();
    for (name, pool) in &config.pools {
        for place in &pool.listen {
            let listener = match place {
                Listen::Tcp(addr) => bind(*addr).map_err(|source| FrontError::Bind {
                    pool: name.clone(),
                    place: place.clone(),
                    source,
                })?,
                Listen::Systemd(fd_name) => {
                    let Some(at) = passed.iter().position(|(n, _)| n == fd_name) else {
                        let names: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(FrontError::NotPassed {
                            pool: name.clone(),
                            place: place.clone(),
                            name: fd_name.clone(),
                            passed: if names.is_empty() { "none".into() } else { names.join(", ") },
                        });
                    };
                    let (_, fd) = passed.remove(at);
                    let not_tcp = || FrontError::NotTcp { pool: name.clone(), name: fd_name.clone() };
                    let kind = sock::kind(fd.as_fd()).map_err(|_| not_tcp())?;
                    if !kind.is_some_and(|k| k.is_tcp() || k.is_mptcp())
                        || !sock::is_listening(fd.as_fd()).unwrap_or(false)
                    {
                        return Err(not_tcp());
                    }
                    TcpListener::from(fd)
                }
            };
            let local = listener.local_addr().map_err(|source| FrontError::Bind {
                pool: name.clone(),
                place: place.clone(),
                source,
            })?;
            doors.push(FrontDoor { pool: name.clone(), place: place.clone(), local, listener });
        }
    }
    if !passed.is_empty() {
        let names: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
        return Err(FrontError::Unclaimed(names.join(", ")));
    }
    Ok(doors)
}

/// A listening TCP socket at `addr`: close-on-exec, non-blocking, with a
/// backlog of [`BACKLOG`].
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    sock::listen(listener.as_fd(), BACKLOG)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Where each pool listens, as bound: for `status`.
pub fn places(doors: &[FrontDoor]) -> BTreeMap<String, Vec<String>> {
    let mut places: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for door in doors {
        places.entry(door.pool.clone()).or_default().push(door.local.to_string());
    }
    places
}

/// Accepts `door`'s clients until the daemon stops or the pool is gone.
pub async fn serve(daemon: Arc<Daemon>, door: FrontDoor) {
    let FrontDoor { pool, place, local, listener } = door;
    let Some(config) = daemon.config.pools.get(&pool).cloned() else { return };
    let request = OpenRequest { tenant: Some(config.listen_tenant.clone()), ..OpenRequest::new(pool.clone()) };
    // (The configuration checked the tenant: this is the same check a
    // gateway's open gets.)
    let request = match crate::validate::open(request) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(%pool, error = %e, "cannot open streams for this pool's listener");
            return;
        }
    };
    // SAFETY: the listener is owned here and stays open as long as the
    // AsyncFd, which it moves into.
    let listener = match unsafe { AsyncFd::register(listener) } {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(%pool, %local, error = %e, "cannot watch the listening socket");
            return;
        }
    };
    tracing::info!(%pool, %place, %local, tenant = %config.listen_tenant, "accepting the pool's clients");
    let mut stopping = daemon.stopping.subscribe();
    loop {
        let room = daemon.core().room_in(&pool);
        if room == 0 {
            if daemon.core().pool_config(&pool).is_none() {
                tracing::info!(%pool, %local, "the pool is gone: no longer accepting");
                break;
            }
            tokio::select! {
                () = crate::context::stopped(&mut stopping) => break,
                () = tokio::time::sleep(ROOM_POLL) => continue,
            }
        }
        let ready = tokio::select! {
            () = crate::context::stopped(&mut stopping) => break,
            ready = listener.readable() => ready,
        };
        let mut guard = match ready {
            Ok(guard) => guard,
            Err(e) => {
                tracing::error!(%pool, %local, error = %e, "the listening socket failed; no longer accepting");
                break;
            }
        };
        let mut batch = Vec::new();
        let mut pause = false;
        while batch.len() < ACCEPT_BATCH.min(room) {
            match listener.get_ref().accept() {
                Ok((stream, _)) => batch.push(OwnedFd::from(stream)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                // A connection reset while queued: the next one.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    // Out of descriptors (or memory): what is queued waits.
                    crate::logcap::limiter().warn("front_accept", format_args!("pool {pool}: accepting failed: {e}"));
                    pause = true;
                    break;
                }
            }
        }
        drop(guard);
        if !admit(&daemon, &request, batch) {
            tracing::info!(%pool, %local, "the pool is gone: no longer accepting");
            break;
        }
        if pause {
            tokio::time::sleep(ACCEPT_PAUSE).await;
        }
    }
}

/// Opens each connection of a batch as a stream, under one lock; a refusal
/// closes it. False once the pool is gone from the configuration.
fn admit(daemon: &Daemon, request: &Open, batch: Vec<OwnedFd>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut core = daemon.core();
    let mut pool_gone = false;
    for fd in batch {
        // A connection is a descriptor like any handed over: near the limit,
        // it is refused before it eats the daemon's reserve.
        if let Some(why) = daemon.fds.refuse_stream(core.live_workers()) {
            crate::logcap::limiter().warn("front_refused", format_args!("pool {}: {why}", request.pool));
            continue;
        }
        let fd = ForeignFd::new(fd);
        match core.open(request, fd, None, 0) {
            OpenOutcome::Done(Ok(_)) => {}
            OpenOutcome::Done(Err(error)) => {
                pool_gone |= error.code == ErrorCode::UnknownPool;
                crate::logcap::limiter()
                    .info("front_refused", format_args!("pool {}: refused a client: {}", request.pool, error.message));
            }
            // (Without an owner to answer, no open waits.)
            OpenOutcome::Waiting(_) => {}
        }
    }
    !pool_gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        let text = format!("[pools.echo]\nhandler = {{ kind = \"echo\" }}\nlisten = [{listen}]\n");
        Config::parse(&text, "test").unwrap()
    }

    fn tcp() -> OwnedFd {
        OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    #[test]
    fn a_pool_binds_its_addresses_and_says_the_port_it_got() {
        let doors = open_doors(&config("\"127.0.0.1:0\""), Vec::new()).unwrap();
        assert_eq!(doors.len(), 1);
        assert_ne!(doors[0].local.port(), 0);
        assert_eq!(places(&doors)["echo"], [doors[0].local.to_string()]);
        assert!(sock::is_listening(doors[0].listener.as_fd()).unwrap());
    }

    #[test]
    fn passed_sockets_go_to_the_pool_that_names_them_and_none_is_left_over() {
        let passed = vec![("echo-tcp".to_owned(), tcp())];
        let doors = open_doors(&config("\"fd:echo-tcp\""), passed).unwrap();
        assert_eq!((doors[0].pool.as_str(), &doors[0].place), ("echo", &Listen::Systemd("echo-tcp".into())));

        let stray = vec![("stray".to_owned(), tcp())];
        let err = open_doors(&config("\"127.0.0.1:0\""), stray).unwrap_err();
        assert!(err.to_string().contains("no pool listens on: stray"), "{err}");

        let err = open_doors(&config("\"fd:echo-tcp\""), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no socket named echo-tcp (passed: none)"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let err = open_doors(&config("\"fd:echo-tcp\""), vec![("echo-tcp".to_owned(), unix.into())]).unwrap_err();
        assert!(matches!(err, FrontError::NotTcp { .. }), "{err}");
        let connected = std::net::TcpStream::connect(TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
        let err = open_doors(&config("\"fd:echo-tcp\""), vec![("echo-tcp".to_owned(), connected.unwrap().into())])
            .unwrap_err();
        assert!(matches!(err, FrontError::NotTcp { .. }), "a connected socket is no listener: {err}");
    }
}
