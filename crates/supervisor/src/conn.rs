//! One client connection: the handshake, then requests in order.
//!
//! Replies and events go through one ordered queue to a writer task (see
//! [`crate::events`]), so a slow client slows only itself. A frame that cannot be decoded, one over the
//! size limit, or one left unfinished for [`FRAME_TIMEOUT`] gets an error
//! reply (id 0) and the connection is closed; other errors answer the request
//! and the connection goes on.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::conn::{FrameReader, FrameWriter, ReadError};
use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::frame::{FrameError, MAX_HANDSHAKE_LEN, MAX_REPLY_LEN, MAX_REQUEST_LEN};
use streamlet_proto::handshake::{accept_hello, HelloReply, Welcome, HANDSHAKE_TIMEOUT};
use streamlet_proto::{Encoding, ErrorBody, ErrorCode, Reply, ReplyBody, Request, PROTOCOL_VERSION};
use tokio::net::UnixStream;

use crate::context::Daemon;
use crate::events::{encode_reply, EventSink, REPLY_BUDGET};
use crate::requests;
use crate::writer::{SocketCopy, Writer};

/// Descriptors waiting for (or stuck in) a close past which connections of
/// peers that are not admins are not read.
pub const CLOSE_BACKLOG: usize = 1024;

/// How long the rest of a begun frame may take.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer's credentials and role. Supplementary groups come from
/// `/proc/PID/status` of the process that connected (the kernel's
/// `SO_PEERCRED` carries only the primary gid); if it is gone already, its
/// primary gid alone counts.
pub(crate) fn peer_of(stream: &UnixStream) -> Option<requests::Peer> {
    let cred = stream.peer_cred().ok()?;
    let mut gids = vec![cred.gid()];
    match streamlet_proto::sock::peer_groups(stream.as_fd()) {
        Ok(groups) => gids.extend(groups),
        Err(e) => tracing::debug!(error = %e, "SO_PEERGROUPS; judging the peer by its primary group"),
    }
    gids.sort_unstable();
    gids.dedup();
    Some(requests::Peer { uid: cred.uid(), gids, pid: cred.pid() })
}

/// The read half and a copy of the socket, dropped in that order (fields
/// drop in the order they are declared): the socket's last close is the
/// copy's, on a closer thread.
struct ReadEnd {
    reader: FrameReader,
    _copy: SocketCopy,
}

/// Serves one connection of the peer `who` (its credentials as the accept
/// read them).
pub async fn serve(daemon: Arc<Daemon>, stream: UnixStream, who: requests::Peer) {
    let peer = Some((who.pid, who.uid));
    // The last close of the socket closes whatever the peer left queued in
    // it (descriptors included, with their own ways to block): this copy
    // makes sure that close happens on a closer thread, never here.
    let last_copy: SocketCopy = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Arc::new(ForeignFd::new(fd)),
        Err(e) => {
            crate::logcap::limiter().warn_peer(
                "dup_failed",
                who.uid,
                format_args!("cannot take a client connection (dup); closing it: {e}"),
            );
            if let Ok(stream) = stream.into_std() {
                streamlet_proto::foreign::dispose(stream.into());
            }
            return;
        }
    };
    let (read, write) = stream.into_split();
    // The read half, then the copy (dropped in that order, whenever).
    let mut read_end = ReadEnd { reader: FrameReader::new(read, MAX_HANDSHAKE_LEN), _copy: last_copy.clone() };
    let reader = &mut read_end.reader;
    // No descriptor is of use before the handshake.
    reader.set_accept_fds(false);
    let mut writer = FrameWriter::new(write);

    // Whether the socket takes descriptors (the listener's refusal is
    // inherited: not yet).
    let mut passing = false;
    let encoding = match handshake(reader).await {
        Ok((encoding, client)) => {
            let welcome = HelloReply::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                encoding,
                server: format!("streamletd {}", env!("CARGO_PKG_VERSION")),
                max_request: MAX_REQUEST_LEN,
                max_reply: MAX_REPLY_LEN,
            });
            // A gateway may send an `open` with its descriptor the moment it
            // reads the welcome: the socket takes descriptors before then.
            if who.role(&daemon) >= requests::Role::Gateway {
                if let Err(e) = streamlet_proto::sock::set_pass_rights(reader.socket(), true) {
                    tracing::debug!(error = %e, "SO_PASSRIGHTS");
                }
                passing = true;
            }
            if write_json(&mut writer, &welcome).await.is_err() {
                return;
            }
            tracing::debug!(?peer, client, encoding = encoding.as_str(), "client connected");
            encoding
        }
        Err(error) => {
            crate::logcap::limiter().info_peer(
                "handshake_refused",
                who.uid,
                format_args!("handshake refused (pid {:?}): {error}", who.pid),
            );
            let _ = write_json(&mut writer, &HelloReply::Error(error)).await;
            return;
        }
    };
    reader.set_max_frame(MAX_REQUEST_LEN);
    reader.set_frame_timeout(Some(FRAME_TIMEOUT));

    // A non-admin's connections share their uid's budget (UID_BUDGET).
    let share = (who.role(&daemon) < requests::Role::Admin).then(|| daemon.backlog.share_of(who.uid));
    let (sink, rx) = EventSink::in_share(encoding, daemon.backlog.clone(), share);
    let mut writer_task = tokio::spawn(Writer::new(writer, last_copy.clone(), rx, sink.clone()).run());
    let mut stopping = daemon.stopping.subscribe();
    let idle_timeout = daemon.config.daemon.idle_timeout;
    let mut heard = tokio::time::Instant::now();

    loop {
        // A peer that pipelines has its next request served from the buffer
        // without a wait for the socket, and so without giving the thread
        // up: it yields first, so that every connection gets its turn and
        // none waits behind another's whole pipeline.
        if reader.buffered() > 0 {
            tokio::task::yield_now().await;
        }
        // Descriptors only from a peer that may open streams (the role is
        // looked up each time: a reload may change it); the socket refuses
        // them from any other, so they never reach the daemon at all.
        let role = who.role(&daemon);
        // While closes back up (closes that block: a file on a stalled FUSE
        // mount), peers that are not admins are read no further: each
        // descriptor they could send would wait in the queue too.
        if role < requests::Role::Admin && streamlet_proto::foreign::closing() > CLOSE_BACKLOG {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                _ = crate::context::stopped(&mut stopping) => break,
            }
        }
        let may_open = role >= requests::Role::Gateway;
        if may_open != passing {
            passing = may_open;
            let socket = reader.socket();
            if let Err(e) = streamlet_proto::sock::set_pass_rights(socket, may_open) {
                tracing::debug!(error = %e, "SO_PASSRIGHTS");
            }
        }
        reader.set_accept_fds(may_open);
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            () = tokio::time::sleep_until(heard + idle_timeout), if !reader.in_frame() => {
                // Silent, and holding nothing: its place is freed for others.
                if sink.held_elsewhere() {
                    heard = tokio::time::Instant::now();
                    continue;
                }
                let message = format!(
                    "no request for {idle_timeout:?} and nothing held (no stream, waiting open or subscription): closing"
                );
                sink.push(encode_reply(encoding, Reply { id: 0, body: ReplyBody::Error(ErrorBody::new(ErrorCode::Idle, message)) }));
                break;
            }
            _ = crate::context::stopped(&mut stopping) => break,
            // Closed by the daemon (a subscriber dropped): no request read
            // after that is run.
            () = sink.wait_closed() => break,
        };
        heard = tokio::time::Instant::now();
        let bytes = match frame {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(e) => {
                let code = match e {
                    ReadError::Frame(FrameError::TooLarge { .. }) => ErrorCode::FrameTooLarge,
                    _ => ErrorCode::BadRequest,
                };
                fatal(&sink, ErrorBody::new(code, e.to_string()), &who);
                break;
            }
        };
        let decoded = encoding.decode::<Request>(&bytes);
        // A listing this peer may have waits for its turn at the thread
        // (`fairness`), and the time it takes, encoding included, is counted.
        let listing = decoded.as_ref().is_ok_and(|r| {
            let role = who.role(&daemon);
            requests::is_listing(&r.body) && role >= requests::needs(&r.body) && role < requests::Role::Admin
        });
        if listing {
            tokio::select! {
                () = daemon.listing_time.wait_turn(who.uid) => {}
                _ = crate::context::stopped(&mut stopping) => break,
            }
        }
        let began = std::time::Instant::now();
        let reply = match decoded {
            Ok(request) => match requests::dispatch(&daemon, &who, request.id, request.body, reader, &sink) {
                requests::Dispatched::Reply(body) => Reply { id: request.id, body },
                requests::Dispatched::Later(done) => {
                    if listing {
                        daemon.listing_time.spent(who.uid, began.elapsed());
                    }
                    // An open waiting for room: its reply goes into the queue
                    // when it comes; replies stay in order, so no further
                    // request is read until then.
                    tokio::select! {
                        _ = done => {}
                        _ = reader.peer_hung_up() => {
                            // Nothing is placed for a gateway that is gone.
                            daemon.core().cancel_waiting(&sink);
                            break;
                        }
                        _ = crate::context::stopped(&mut stopping) => break,
                    }
                    continue;
                }
            },
            Err(e) => {
                let error =
                    ErrorBody::new(ErrorCode::BadRequest, format!("undecodable {} frame: {e}", encoding.as_str()));
                match json_request_id(encoding, &bytes) {
                    // Well-formed JSON with an id (a request kind this daemon
                    // does not know, a field of the wrong type): answer it and
                    // go on. A descriptor it carried is closed with the next
                    // frame read.
                    Some(id) => Reply { id, body: ReplyBody::Error(error) },
                    None => {
                        fatal(&sink, error, &who);
                        break;
                    }
                }
            }
        };
        // Queued with no await since the request ran: no event about a stream
        // this request opened can be ahead of its reply.
        sink.push(encode_reply(encoding, reply));
        if listing {
            daemon.listing_time.spent(who.uid, began.elapsed());
        }
        tokio::select! {
            _ = sink.wait_below(REPLY_BUDGET) => {}
            _ = crate::context::stopped(&mut stopping) => break,
        }
        if sink.is_closed() {
            break;
        }
    }
    if sink.was_aborted() {
        crate::logcap::limiter().warn_peer(
            "connection_aborted",
            who.uid,
            format_args!(
                "closed a control connection (pid {:?}) that left the most unread while all connections together left over {} MiB",
                who.pid,
                crate::events::TOTAL_BUDGET >> 20
            ),
        );
    }
    sink.close();
    drop(sink);
    // Streams this connection opened hold clones of the sink until they end;
    // the writer stops at the close marker all the same.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer_task).await.is_err() {
        writer_task.abort();
    }
}

/// The `id` of a JSON frame that is an object with a numeric id (and so a
/// request this daemon cannot read, rather than garbage).
fn json_request_id(encoding: Encoding, bytes: &[u8]) -> Option<u64> {
    if encoding != Encoding::Json {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("id")?.as_u64().filter(|id| *id != 0)
}

fn fatal(sink: &EventSink, error: ErrorBody, who: &requests::Peer) {
    crate::logcap::limiter().info_peer(
        "connection_closed",
        who.uid,
        format_args!("closing a client connection (pid {:?}): {error}", who.pid),
    );
    sink.push(encode_reply(sink.encoding(), Reply { id: 0, body: ReplyBody::Error(error) }));
}

async fn handshake(reader: &mut FrameReader) -> Result<(Encoding, String), ErrorBody> {
    let frame = match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_frame()).await {
        Err(_) => return Err(ErrorBody::new(ErrorCode::BadRequest, format!("no hello within {HANDSHAKE_TIMEOUT:?}"))),
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return Err(ErrorBody::new(ErrorCode::BadRequest, "closed before the hello")),
        Ok(Err(ReadError::Frame(e @ FrameError::TooLarge { .. }))) => {
            return Err(ErrorBody::new(ErrorCode::FrameTooLarge, format!("hello {e}")))
        }
        Ok(Err(e)) => return Err(ErrorBody::new(ErrorCode::BadRequest, e.to_string())),
    };
    let (hello, encoding) = accept_hello(&frame)?;
    Ok((encoding, hello.client.unwrap_or_default()))
}

async fn write_json(writer: &mut FrameWriter, reply: &HelloReply) -> std::io::Result<()> {
    let frame = Encoding::Json.encode_frame(reply).map_err(std::io::Error::other)?;
    writer.write_frame(&frame).await
}

#[cfg(test)]
mod tests {
    /// The peer's groups are its primary group and the kernel's record of
    /// its supplementary ones (`sock::peer_groups`, tested there).
    #[tokio::test]
    async fn the_peers_groups_are_the_kernels_record_of_them() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let peer = super::peer_of(&a).unwrap();
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        let mut ours: Vec<u32> = nix::unistd::getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
        ours.push(nix::unistd::getegid().as_raw());
        ours.sort_unstable();
        ours.dedup();
        assert_eq!(peer.gids, ours, "the primary group and the supplementary ones, sorted, once each");
    }
}
