//! `streamletctl pools`: each pool's size against what the autoscaler and
//! its forecast want.

use streamlet_client::{table, Client};

pub async fn run(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let status = client.status().await?;
    super::print(json, || table::pools_table(&status), || table::pools_json(&status))
}
