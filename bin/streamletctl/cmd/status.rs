//! `streamletctl status`: the daemon and its pools.

use streamlet_client::{table, Client};

pub async fn run(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let status = client.status().await?;
    super::print(json, || table::status_table(&status), || table::status_json(&status))
}
