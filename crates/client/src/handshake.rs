//! The client's side of the handshake: connect, send a JSON `Hello`, read the
//! JSON `HelloReply`, all within [`HANDSHAKE_TIMEOUT`].

use std::path::Path;

use streamlet_proto::conn::{FrameReader, FrameWriter};
use streamlet_proto::frame::{MAX_HANDSHAKE_LEN, MAX_REPLY_LEN};
use streamlet_proto::handshake::{Hello, HelloReply, Welcome, HANDSHAKE_TIMEOUT};
use streamlet_proto::{Encoding, PROTOCOL_VERSION};
use tokio::net::UnixStream;

use crate::error::ClientError;

/// Both halves of a connection past the handshake, and the daemon's welcome.
#[derive(Debug)]
pub(crate) struct Handshaken {
    pub reader: FrameReader,
    pub writer: FrameWriter,
    pub welcome: Welcome,
}

/// Connects to `path` and performs the handshake, all of it within
/// [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn connect(path: &Path, encoding: Encoding, name: &str) -> Result<Handshaken, ClientError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_untimed(path, encoding, name))
        .await
        .map_err(|_| ClientError::Timeout)?
}

async fn connect_untimed(path: &Path, encoding: Encoding, name: &str) -> Result<Handshaken, ClientError> {
    // The one default path another user could have made first.
    streamlet_proto::socket_path::check_fallback(path).map_err(|reason| ClientError::Untrusted { reason })?;
    let stream =
        UnixStream::connect(path).await.map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, MAX_HANDSHAKE_LEN);
    let mut writer = FrameWriter::new(write);

    let hello = Encoding::Json.encode_frame(&Hello::new(encoding, name))?;
    writer.write_frame(&hello).await?;
    let frame = reader.read_frame().await?.ok_or(ClientError::Closed)?;
    let welcome = match Encoding::Json.decode::<HelloReply>(&frame)? {
        HelloReply::Welcome(welcome) => welcome,
        HelloReply::Error(body) => return Err(ClientError::Handshake(body)),
    };
    if welcome.version != PROTOCOL_VERSION || welcome.encoding != encoding {
        return Err(ClientError::Unexpected {
            expected: "a welcome to the version and encoding asked for",
            received: format!("version {} in {}", welcome.version, welcome.encoding.as_str()),
        });
    }
    // Whatever answers at the path may announce any size: this client's own
    // limit bounds what it buffers.
    reader.set_max_frame(welcome.max_reply.min(MAX_REPLY_LEN));
    Ok(Handshaken { reader, writer, welcome })
}
