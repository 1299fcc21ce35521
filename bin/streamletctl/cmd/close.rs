//! `streamletctl close <STREAM>`: ends a stream.

use serde_json::json;
use streamlet_client::proto::StreamId;
use streamlet_client::Client;

pub async fn run(client: &mut Client, stream: StreamId, json: bool) -> anyhow::Result<()> {
    let closed = client.close(stream).await?;
    super::say(json, || format!("closed stream {}", closed.stream), || json!({ "stream": closed.stream.0 }))
}
