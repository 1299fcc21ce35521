//! `streamletctl streams [--pool P]`: the open streams.

use streamlet_client::{table, Client};

pub async fn run(client: &mut Client, pool: Option<String>, json: bool) -> anyhow::Result<()> {
    let streams = client.streams(pool).await?;
    super::print(json, || table::streams_table(&streams), || table::streams_json(&streams))
}
