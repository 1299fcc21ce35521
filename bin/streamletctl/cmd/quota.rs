//! `streamletctl quota`: capacity, allocated and free, per host, pool and tenant.

use streamlet_client::{table, Client};

pub async fn run(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let report = client.quota().await?;
    super::print(json, || table::quota_table(&report), || table::quota_json(&report))
}
