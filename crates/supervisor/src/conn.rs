//! One client connection: the handshake, then requests in order.
//!
//! Replies and events go through one bounded queue to a writer task, so a
//! slow client slows only itself. A frame that cannot be decoded, one over the
//! size limit, or one left unfinished for [`FRAME_TIMEOUT`] gets an error
//! reply (id 0) and the connection is closed; other errors answer the request
//! and the connection goes on.

use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::conn::{FrameReader, FrameWriter, ReadError};
use streamlet_proto::frame::{FrameError, HEADER_LEN, MAX_HANDSHAKE_LEN, MAX_REPLY_LEN, MAX_REQUEST_LEN};
use streamlet_proto::handshake::{accept_hello, HelloReply, Welcome, HANDSHAKE_TIMEOUT};
use streamlet_proto::{Encoding, ErrorBody, ErrorCode, Reply, ReplyBody, Request, ServerMessage, PROTOCOL_VERSION};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::events::EventSink;
use crate::requests;

/// How long the rest of a begun frame may take.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames queued for one client before the reader waits for the writer.
const QUEUE: usize = 1024;

pub async fn serve(daemon: Arc<Daemon>, stream: UnixStream) {
    let peer = stream.peer_cred().ok().map(|c| (c.pid(), c.uid()));
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, MAX_HANDSHAKE_LEN);
    let mut writer = FrameWriter::new(write);

    let encoding = match handshake(&mut reader).await {
        Ok((encoding, client)) => {
            let welcome = HelloReply::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                encoding,
                server: format!("streamletd {}", env!("CARGO_PKG_VERSION")),
                max_request: MAX_REQUEST_LEN,
                max_reply: MAX_REPLY_LEN,
            });
            if write_json(&mut writer, &welcome).await.is_err() {
                return;
            }
            tracing::debug!(?peer, client, encoding = encoding.as_str(), "client connected");
            encoding
        }
        Err(error) => {
            tracing::info!(?peer, %error, "handshake refused");
            let _ = write_json(&mut writer, &HelloReply::Error(error)).await;
            return;
        }
    };
    reader.set_max_frame(MAX_REQUEST_LEN);
    reader.set_frame_timeout(Some(FRAME_TIMEOUT));

    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_frame(&frame).await.is_err() {
                return;
            }
        }
    });
    let sink = EventSink::new(tx.clone(), encoding);
    let mut stopping = daemon.stopping.subscribe();

    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            _ = crate::daemon::stopped(&mut stopping) => break,
        };
        let bytes = match frame {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(e) => {
                let code = match e {
                    ReadError::Frame(FrameError::TooLarge { .. }) => ErrorCode::FrameTooLarge,
                    _ => ErrorCode::BadRequest,
                };
                fatal(&tx, encoding, ErrorBody::new(code, e.to_string()), peer).await;
                break;
            }
        };
        // The reply's place in the queue is taken before the request runs, so
        // no event about the stream it opens can overtake it.
        let Ok(permit) = tx.reserve().await else { break };
        let reply = match encoding.decode::<Request>(&bytes) {
            Ok(request) => {
                let body = requests::dispatch(&daemon, request.body, &mut reader, &sink);
                Reply { id: request.id, body }
            }
            Err(e) => {
                let error =
                    ErrorBody::new(ErrorCode::BadRequest, format!("undecodable {} frame: {e}", encoding.as_str()));
                match json_request_id(encoding, &bytes) {
                    // Well-formed JSON with an id (a request kind this daemon
                    // does not know, a misspelt field): answer it, go on. A
                    // refused open still takes its descriptor, so the next
                    // open does not take the wrong one.
                    Some((id, is_open)) => {
                        if is_open {
                            drop(reader.take_fd());
                        }
                        Reply { id, body: ReplyBody::Error(error) }
                    }
                    None => {
                        drop(permit);
                        fatal(&tx, encoding, error, peer).await;
                        break;
                    }
                }
            }
        };
        let id = reply.id;
        let frame = encoding.encode_frame(&ServerMessage::Reply(reply)).map_err(|e| e.to_string()).and_then(|frame| {
            if frame.len() - HEADER_LEN > MAX_REPLY_LEN as usize {
                Err(format!(
                    "the reply of {} bytes is over the {MAX_REPLY_LEN} byte limit; filter it by pool",
                    frame.len()
                ))
            } else {
                Ok(frame)
            }
        });
        match frame {
            Ok(frame) => permit.send(frame),
            Err(message) => {
                tracing::error!(id, message, "cannot send a reply");
                let error = ServerMessage::Reply(Reply {
                    id,
                    body: ReplyBody::Error(ErrorBody::new(ErrorCode::Internal, message)),
                });
                match encoding.encode_frame(&error) {
                    Ok(frame) => permit.send(frame),
                    Err(e) => tracing::error!(error = %e, "cannot encode an error reply"),
                }
            }
        }
    }
    drop(sink);
    drop(tx);
    // Streams this connection opened hold clones of the sink until they end;
    // don't wait for them: the writer ends when the last clone goes.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
}

/// The `id` of a JSON frame that is an object with a numeric id (and so a
/// request this daemon cannot read, rather than garbage), and whether its body
/// is an `open`.
fn json_request_id(encoding: Encoding, bytes: &[u8]) -> Option<(u64, bool)> {
    if encoding != Encoding::Json {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = value.get("id")?.as_u64().filter(|id| *id != 0)?;
    Some((id, value.pointer("/body/open").is_some()))
}

async fn fatal(tx: &mpsc::Sender<Vec<u8>>, encoding: Encoding, error: ErrorBody, peer: Option<(Option<i32>, u32)>) {
    tracing::info!(?peer, %error, "closing a client connection");
    if let Ok(frame) = encoding.encode_frame(&ServerMessage::Reply(Reply { id: 0, body: ReplyBody::Error(error) })) {
        let _ = tx.send(frame).await;
    }
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
