//! `streamletctl lease`: holds a lease from the terminal, refreshing it at a
//! third of its TTL, until end of input or Ctrl-C, then releases it.

use std::time::Duration;

use serde_json::json;
use streamlet_client::proto::units::format_rate;
use streamlet_client::proto::LeaseRequest;
use streamlet_client::Client;
use tokio::io::AsyncReadExt;

use crate::out;

pub async fn run(client: &mut Client, request: LeaseRequest, json: bool) -> anyhow::Result<()> {
    let ttl = Duration::from_millis(request.ttl_ms);
    let granted = client.lease(request).await?;
    let say = |what: &str, rate: u64, expires_in_ms: u64| {
        if json {
            out::json_line(
                &json!({ "event": what, "lease": granted.lease, "rate": rate, "expires_in_ms": expires_in_ms }),
            )
        } else {
            out::line(&format!("lease {} {what}: {} for {} ms", granted.lease, format_rate(rate), expires_in_ms))
        }
    };
    say("granted", granted.rate, granted.expires_in_ms)?;
    let mut refresh = tokio::time::interval((ttl / 3).max(Duration::from_millis(10)));
    refresh.tick().await;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    loop {
        tokio::select! {
            _ = refresh.tick() => {
                let now = client.refresh(granted.lease).await?;
                say("refreshed", now.rate, now.expires_in_ms)?;
            }
            read = stdin.read(&mut sink) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.release(granted.lease).await?;
    say("released", 0, 0)
}
