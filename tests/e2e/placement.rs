//! Placement through the daemon, by the labels of single streamlets.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use streamlet_client::Client;
use streamlet_proto::{OpenRequest, WorkerId};

use crate::support::{Daemon, TWO_BY_64};

/// Two streamlets of one pool, one in each region.
const TWO_REGIONS: &str = r#"
[daemon]
shutdown_timeout = "2s"

[regions.distance]
"eu-west:us-east" = 80

[pools.edge]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 2
placement = "geo"
labels = { tier = "edge" }
worker_labels = [{ region = "eu-west" }, { region = "us-east" }]
"#;

/// Which streamlet carries each value of the label `key`.
async fn by_label(client: &mut Client, key: &str) -> HashMap<String, WorkerId> {
    let workers = client.workers(None).await.unwrap();
    // (The pool's spare carries no slot, so no slot's labels, until it takes one.)
    let serving = workers.into_iter().filter(|w| w.state == streamlet_proto::WorkerState::Ready);
    serving.map(|w| (w.labels[key].clone(), w.id)).collect()
}

async fn open(client: &mut Client, request: OpenRequest, held: &mut Vec<UnixStream>) -> WorkerId {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(request, theirs.as_fd()).await.unwrap();
    held.push(mine);
    opened.worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_places_each_stream_on_the_streamlet_of_its_region_then_the_nearest_with_room() {
    let daemon = Daemon::start(TWO_REGIONS);
    let mut client = daemon.client().await;
    let workers = client.workers(None).await.unwrap();
    // (The ready ones: a spare, starting or ready, has no slot's labels.)
    let serving = workers.iter().filter(|w| w.state == streamlet_proto::WorkerState::Ready);
    assert!(serving.clone().all(|w| w.labels["tier"] == "edge"), "the pool's labels stay under each one's own");
    let region = by_label(&mut client, "region").await;
    assert_eq!(region.len(), 2, "one streamlet per region: {region:?}");

    let mut held = Vec::new();
    let near = |r: &str| OpenRequest { region: Some(r.into()), ..OpenRequest::new("edge") };
    assert_eq!(open(&mut client, near("us-east"), &mut held).await, region["us-east"]);
    assert_eq!(open(&mut client, near("eu-west"), &mut held).await, region["eu-west"]);
    assert_eq!(open(&mut client, near("eu-west"), &mut held).await, region["eu-west"]);
    // eu-west is full (2 streams each): the nearest region with room.
    assert_eq!(open(&mut client, near("eu-west"), &mut held).await, region["us-east"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layered_prefers_the_labelled_streamlet_in_a_tie() {
    let config = r#"
[daemon]
shutdown_timeout = "2s"

[pools.relay]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 3
placement = "layered"
prefer = { forwarded = "true" }
worker_labels = [{ forwarded = "false" }, { forwarded = "true" }]
"#;
    let daemon = Daemon::start(config);
    let mut client = daemon.client().await;
    let forwarded = by_label(&mut client, "forwarded").await;
    let mut held = Vec::new();
    let mut placed = Vec::new();
    for _ in 0..6 {
        let worker = open(&mut client, OpenRequest::new("relay"), &mut held).await;
        placed.push(if worker == forwarded["true"] { "true" } else { "false" });
    }
    // Every streamlet gets N streams before any gets N + 1; in each tie, the preferred one first.
    assert_eq!(placed, ["true", "false", "true", "false", "true", "false"]);
}

/// With `tenant_isolation`, a streamlet serves one tenant at a time: a
/// second tenant never joins a streamlet that serves another, a tenant's
/// streams go where its others are, and a streamlet is anyone's again once
/// its last stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tenant_isolation_no_streamlet_serves_two_tenants_at_once() {
    let config = TWO_BY_64.replace("streams_per_worker = 64", "streams_per_worker = 4\ntenant_isolation = true");
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let open = |tenant: &str| OpenRequest { tenant: Some(tenant.into()), ..OpenRequest::new("echo") };
    let mut held = Vec::new();
    let (mine, theirs) = UnixStream::pair().unwrap();
    let a1 = client.open(open("acme"), theirs.as_fd()).await.unwrap();
    held.push(mine);
    let (mine, theirs) = UnixStream::pair().unwrap();
    let b1 = client.open(open("bolt"), theirs.as_fd()).await.unwrap();
    held.push(mine);
    assert_ne!(a1.worker, b1.worker, "a second tenant gets a streamlet of its own");
    let (mine, theirs) = UnixStream::pair().unwrap();
    let a2 = client.open(open("acme"), theirs.as_fd()).await.unwrap();
    held.push(mine);
    assert_eq!(a2.worker, a1.worker, "a tenant's streams go where its others are");
    // Both streamlets serve a tenant: a third has no room, though slots are free.
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let refused = client.open(open("crux"), theirs.as_fd()).await.unwrap_err().to_string();
    assert!(refused.contains("no_capacity") && refused.contains("tenant_isolation"), "{refused}");
    // bolt's only stream ends: its streamlet is anyone's again.
    client.close(b1.stream).await.unwrap();
    daemon.wait_until(|s| s.pools[0].streams == 2);
    let (mine, theirs) = UnixStream::pair().unwrap();
    let c1 = client.open(open("crux"), theirs.as_fd()).await.unwrap();
    held.push(mine);
    assert_eq!(c1.worker, b1.worker);
    for stream in client.streams(None).await.unwrap() {
        let expected = if stream.worker == a1.worker { "acme" } else { "crux" };
        assert_eq!(stream.tenant, expected, "{stream:?}");
    }
}

/// A reload that turns `tenant_isolation` on: a streamlet that serves
/// several tenants already takes no new stream until it is empty, and one
/// that serves one tenant takes only that tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_turned_on_by_a_reload_holds_for_the_streams_already_open() {
    let config = TWO_BY_64.replace("streams_per_worker = 64", "streams_per_worker = 4");
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let open = |tenant: &str| OpenRequest { tenant: Some(tenant.into()), ..OpenRequest::new("echo") };
    let mut held = Vec::new();
    let mut opened = Vec::new();
    for tenant in ["acme", "bolt", "crux"] {
        let (mine, theirs) = UnixStream::pair().unwrap();
        opened.push(client.open(open(tenant), theirs.as_fd()).await.unwrap());
        held.push(mine);
    }
    // least-connections: acme and crux share a streamlet, bolt has the other.
    assert_eq!(opened[0].worker, opened[2].worker);
    assert_ne!(opened[0].worker, opened[1].worker);
    std::fs::write(daemon.dir.path().join("streamletd.toml"), format!("{config}tenant_isolation = true\n")).unwrap();
    let summary = client.reload().await.unwrap();
    assert!(summary.notes.iter().any(|n| n.contains("1 streamlets serve several tenants")), "{:?}", summary.notes);
    // acme may go neither to its shared streamlet nor to bolt's.
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let refused = client.open(open("acme"), theirs.as_fd()).await.unwrap_err().to_string();
    assert!(refused.contains("no_capacity"), "{refused}");
    let (mine, theirs) = UnixStream::pair().unwrap();
    assert_eq!(client.open(open("bolt"), theirs.as_fd()).await.unwrap().worker, opened[1].worker);
    held.push(mine);
    // The shared streamlet empties: it is anyone's again.
    client.close(opened[0].stream).await.unwrap();
    client.close(opened[2].stream).await.unwrap();
    daemon.wait_until(|s| s.pools[0].streams == 2);
    let (mine, theirs) = UnixStream::pair().unwrap();
    assert_eq!(client.open(open("acme"), theirs.as_fd()).await.unwrap().worker, opened[0].worker);
    held.push(mine);
}
