//! A scripted stand-in for `streamletd`, built from the proto crate: it does
//! the daemon's side of the handshake, then lets a test read requests and
//! write replies and events one by one.

#![allow(dead_code)] // each test binary uses a different part

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use streamlet_client::proto::conn::{FrameReader, FrameWriter};
use streamlet_client::proto::frame::{MAX_HANDSHAKE_LEN, MAX_REPLY_LEN, MAX_REQUEST_LEN};
use streamlet_client::proto::handshake::{accept_hello, Hello, HelloReply, Welcome};
use streamlet_client::proto::{Encoding, ErrorBody, Event, Reply, ReplyBody, Request, ServerMessage, PROTOCOL_VERSION};
use tempfile::TempDir;
use tokio::net::UnixListener;

/// A listening control socket in a temporary directory.
pub struct FakeDaemon {
    pub path: PathBuf,
    listener: UnixListener,
    _dir: TempDir,
}

/// One accepted client connection, past the handshake.
pub struct Accepted {
    pub hello: Hello,
    pub encoding: Encoding,
    reader: FrameReader,
    writer: FrameWriter,
}

impl FakeDaemon {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streamletd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Self { path, listener, _dir: dir }
    }

    /// Binds at `path` (in a directory the test owns).
    pub fn bind(path: PathBuf, dir: TempDir) -> Self {
        let listener = UnixListener::bind(&path).unwrap();
        Self { path, listener, _dir: dir }
    }

    /// Accepts a connection and welcomes it.
    pub async fn accept(&self) -> Accepted {
        self.accept_with(|_| Ok(())).await.unwrap()
    }

    /// Accepts a connection and answers its hello with `answer`'s error, if
    /// any, and then closes it; else welcomes it.
    pub async fn accept_with(&self, answer: impl FnOnce(&Hello) -> Result<(), ErrorBody>) -> Option<Accepted> {
        self.accept_announcing(answer, MAX_REPLY_LEN).await
    }

    /// [`accept_with`](Self::accept_with), with a welcome that announces
    /// frames of up to `max_reply` bytes (as an impostor may).
    pub async fn accept_announcing(
        &self,
        answer: impl FnOnce(&Hello) -> Result<(), ErrorBody>,
        max_reply: u32,
    ) -> Option<Accepted> {
        let (stream, _) = self.listener.accept().await.unwrap();
        let (read, write) = stream.into_split();
        let mut reader = FrameReader::new(read, MAX_HANDSHAKE_LEN);
        let mut writer = FrameWriter::new(write);
        let frame = reader.read_frame().await.unwrap().unwrap();
        let (hello, encoding) = accept_hello(&frame).unwrap();
        if let Err(error) = answer(&hello) {
            let frame = Encoding::Json.encode_frame(&HelloReply::Error(error)).unwrap();
            writer.write_frame(&frame).await.unwrap();
            return None;
        }
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            encoding,
            server: "streamletd test".into(),
            max_request: MAX_REQUEST_LEN,
            max_reply,
        };
        writer.write_frame(&Encoding::Json.encode_frame(&HelloReply::Welcome(welcome)).unwrap()).await.unwrap();
        reader.set_max_frame(MAX_REQUEST_LEN);
        Some(Accepted { hello, encoding, reader, writer })
    }

    /// Accepts a connection and reads its hello, but never answers; the
    /// connection stays open while the result lives.
    pub async fn accept_silently(&self) -> (FrameReader, FrameWriter) {
        let (stream, _) = self.listener.accept().await.unwrap();
        let (read, write) = stream.into_split();
        let mut reader = FrameReader::new(read, MAX_HANDSHAKE_LEN);
        reader.read_frame().await.unwrap().unwrap();
        (reader, FrameWriter::new(write))
    }
}

impl Accepted {
    /// The next request, with the descriptor that came with it; `None` when
    /// the client hung up.
    pub async fn request(&mut self) -> Option<(Request, Option<OwnedFd>)> {
        let frame = self.reader.read_frame().await.unwrap()?;
        let request: Request = self.encoding.decode(&frame).unwrap();
        let fd = match self.reader.take_fd() {
            streamlet_proto::conn::Attached::Fd(fd) => Some(fd.into_owned()),
            _ => None,
        };
        Some((request, fd))
    }

    pub async fn reply(&mut self, id: u64, body: ReplyBody) {
        self.send(&ServerMessage::Reply(Reply { id, body })).await;
    }

    pub async fn event(&mut self, event: Event) {
        self.send(&ServerMessage::Event(event)).await;
    }

    /// Bytes as they are, frame or not.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_frame(bytes).await.unwrap();
    }

    pub async fn send(&mut self, message: &ServerMessage) {
        let frame = self.encoding.encode_frame(message).unwrap();
        self.writer.write_frame(&frame).await.unwrap();
    }
}
