//! Prometheus metrics: the registry, and its text exposition format. The
//! opt-in HTTP listener that serves them is `scrape.rs`.
//!
//! Counters and histograms are updated where things happen (an open, a
//! spawn, a death); gauges are read from the core at each scrape, under its
//! lock for a moment, and the text is encoded outside it.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub pool: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenLabels {
    pub pool: String,
    /// `opened`, or the error code of the refusal.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub pool: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BandwidthLabels {
    /// `host`, `pool` or `tenant`.
    pub level: String,
    pub name: String,
    /// `capacity`, `allocated` or `free`.
    pub kind: String,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub workers: Family<StateLabels, Gauge>,
    pub streams: Family<PoolLabel, Gauge>,
    pub opens: Family<OpenLabels, Counter>,
    pub placement: Histogram,
    pub bandwidth: Family<BandwidthLabels, Gauge>,
    pub restarts: Family<CauseLabels, Counter>,
    pub spawn: Histogram,
    pub desired: Family<PoolLabel, Gauge>,
    pub forecast: Family<PoolLabel, Gauge>,
    pub predicted_streams: Family<PoolLabel, Gauge>,
    /// The `opens` counters already made, by pool and result: an open
    /// counts without building its labels (two strings) and hashing them.
    open_counters: std::sync::Mutex<std::collections::HashMap<String, Vec<(&'static str, Counter)>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("streamlet");
        let m = Self {
            workers: Family::default(),
            streams: Family::default(),
            opens: Family::default(),
            // 1 µs to about 33 ms.
            placement: Histogram::new(exponential_buckets(1e-6, 2.0, 16)),
            bandwidth: Family::default(),
            restarts: Family::default(),
            // 0.5 ms to about 16 s.
            spawn: Histogram::new(exponential_buckets(5e-4, 2.0, 16)),
            desired: Family::default(),
            forecast: Family::default(),
            predicted_streams: Family::default(),
            registry: Registry::default(),
            open_counters: Default::default(),
        };
        registry.register("workers", "Streamlets by pool and state", m.workers.clone());
        registry.register("streams", "Open streams by pool", m.streams.clone());
        registry.register("opens", "Opens by pool and result (opened, or the refusal's error code)", m.opens.clone());
        registry.register("placement_seconds", "Time to place and hand over a stream", m.placement.clone());
        registry.register(
            "bandwidth_bytes_per_second",
            "Egress capacity, allocated and free bandwidth by level (host, pool, tenant)",
            m.bandwidth.clone(),
        );
        registry.register("restarts", "Streamlet deaths followed by a restart, by pool and cause", m.restarts.clone());
        registry.register("spawn_seconds", "Time from a streamlet's spawn to its Ready", m.spawn.clone());
        registry.register("desired_workers", "Streamlets the autoscaler wants, by pool", m.desired.clone());
        registry.register(
            "forecast_workers",
            "Streamlets the demand forecast asks for, by pool (forecasting pools)",
            m.forecast.clone(),
        );
        registry.register(
            "forecast_streams",
            "Concurrent streams the forecast expects over the lead window, by pool (compare streamlet_streams)",
            m.predicted_streams.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// An open of `pool` ended with `result` (`opened`, or the refusal's
    /// error code) after `took`.
    pub fn opened(&self, pool: &str, result: &'static str, took: Duration) {
        let mut cache = self.open_counters.lock().unwrap_or_else(|p| p.into_inner());
        let counters = match cache.get_mut(pool) {
            Some(counters) => counters,
            None => cache.entry(pool.to_owned()).or_default(),
        };
        match counters.iter().find(|(r, _)| *r == result) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                let labels = OpenLabels { pool: pool.to_owned(), result: result.to_owned() };
                let counter = self.opens.get_or_create(&labels).clone();
                counter.inc();
                counters.push((result, counter));
            }
        }
        drop(cache);
        self.placement.observe(took.as_secs_f64());
    }

    /// Forgets the cached `opens` counters of a pool gone from the
    /// configuration (its series stay, as counters do).
    pub fn forget_pool(&self, pool: &str) {
        self.open_counters.lock().unwrap_or_else(|p| p.into_inner()).remove(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_count_by_pool_and_result_through_their_cached_counters() {
        let metrics = Metrics::default();
        for result in ["opened", "opened", "no_capacity", "opened"] {
            metrics.opened("echo", result, Duration::from_micros(5));
        }
        metrics.opened("relay", "opened", Duration::from_micros(5));
        metrics.forget_pool("relay");
        metrics.opened("relay", "opened", Duration::from_micros(5));
        let text = metrics.encode();
        for line in [
            "streamlet_opens_total{pool=\"echo\",result=\"opened\"} 3",
            "streamlet_opens_total{pool=\"echo\",result=\"no_capacity\"} 1",
            "streamlet_opens_total{pool=\"relay\",result=\"opened\"} 2",
            "streamlet_placement_seconds_count 6",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
