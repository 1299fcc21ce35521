//! `echo`: writes back every byte it reads, until the client closes its side.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::handler::{BoxFuture, Handler, HandlerResult, StreamContext};
use crate::stream::Stream;

/// Small on purpose: a streamlet may hold a hundred streams.
const BUF: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    fn serve(&self, mut stream: Stream, _ctx: StreamContext) -> BoxFuture<HandlerResult> {
        Box::pin(async move {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    stream.shutdown().await?;
                    return Ok(());
                }
                stream.write_all(&buf[..n]).await?;
            }
        })
    }
}
