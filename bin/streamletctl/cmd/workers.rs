//! `streamletctl workers [--pool P]`: the streamlets.

use streamlet_client::{table, Client};

pub async fn run(client: &mut Client, pool: Option<String>, json: bool) -> anyhow::Result<()> {
    let workers = client.workers(pool).await?;
    super::print(json, || table::workers_table(&workers), || table::workers_json(&workers))
}
