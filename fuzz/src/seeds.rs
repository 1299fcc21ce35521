//! The seed inputs of each target: real, valid messages of every kind, so
//! that the fuzzer starts deep inside each decoder instead of at its first
//! check. The control-socket messages are the JSON examples of PROTOCOL.md,
//! in both encodings.
//!
//! `fuzz/corpus/<target>/seed-*` are these, written by
//! `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seeds`.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Serialize;
use streamlet_autoscale::history::{self, HistoryFile, PoolHistory, MISSING};
use streamlet_proto::handshake::{Hello, HelloReply, Welcome};
use streamlet_proto::worker::{Assign, Ended, FromWorker, HandlerSpec, Init, OnCorrupt, StreamCounters, ToWorker};
use streamlet_proto::{Encoding, EndReason, ExitCause, Request, ServerMessage, StreamId, WorkerId, PROTOCOL_VERSION};

/// One seed: its file name (without the `seed-` prefix) and its bytes.
pub type Seed = (String, Vec<u8>);

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("control_request", control_request()),
        ("server_message", server_message()),
        ("channel_from_worker", channel_from_worker()),
        ("channel_to_worker", channel_to_worker()),
        ("history_file", history_file()),
        ("config", config()),
    ]
}

const PROTOCOL_MD: &str = include_str!("../../PROTOCOL.md");

/// The JSON examples of PROTOCOL.md that are a `T`.
fn documented<T: DeserializeOwned>() -> Vec<T> {
    let mut in_json = false;
    let mut found = Vec::new();
    for line in PROTOCOL_MD.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json && l.starts_with('{') => found.extend(serde_json::from_str::<T>(l).ok()),
            _ => {}
        }
    }
    found
}

fn frame<T: Serialize>(encoding: Encoding, message: &T) -> Vec<u8> {
    encoding.encode_frame(message).expect("a seed message encodes")
}

fn encodings() -> [Encoding; 2] {
    [Encoding::Json, Encoding::Postcard]
}

/// What a gateway sends: its hello, then one documented request.
pub fn control_request() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for encoding in encodings() {
        for request in documented::<Request>() {
            let mut stream = frame(Encoding::Json, &Hello::new(encoding, "seed"));
            stream.extend(frame(encoding, &request));
            seeds.push((format!("{}-{}-{}", encoding.as_str(), request.body.name(), request.id), stream));
        }
    }
    seeds
}

fn kind_of(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Reply(reply) => reply.body.name().to_owned(),
        ServerMessage::Event(event) => {
            let json = serde_json::to_value(event).expect("an event encodes");
            json.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default()
        }
    }
}

/// What the daemon sends a client: its welcome, then a documented reply and
/// a documented event; and the refusal of a hello.
pub fn server_message() -> Vec<Seed> {
    let messages = documented::<ServerMessage>();
    let (replies, events): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| matches!(m, ServerMessage::Reply(_)));
    let mut seen = BTreeSet::new();
    let replies: Vec<_> = replies.into_iter().filter(|m| seen.insert(kind_of(m))).collect();
    let mut seeds = Vec::new();
    for encoding in encodings() {
        let welcome = HelloReply::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            encoding,
            server: "streamletd 0.1.0".into(),
            max_request: streamlet_proto::frame::MAX_REQUEST_LEN,
            max_reply: streamlet_proto::frame::MAX_REPLY_LEN,
        });
        for (i, reply) in replies.iter().enumerate() {
            let event = &events[i % events.len()];
            let mut stream = frame(Encoding::Json, &welcome);
            stream.extend(frame(encoding, reply));
            stream.extend(frame(encoding, event));
            seeds.push((format!("{}-{}-{}", encoding.as_str(), kind_of(reply), kind_of(event)), stream));
        }
    }
    for refusal in documented::<HelloReply>().into_iter().filter(|r| matches!(r, HelloReply::Error(_))) {
        seeds.push(("refused".into(), frame(Encoding::Json, &refusal)));
    }
    seeds
}

fn postcard<T: Serialize>(message: &T) -> Vec<u8> {
    streamlet_proto::channel::encode(message).expect("a seed message encodes")
}

/// What a streamlet sends the daemon.
pub fn channel_from_worker() -> Vec<Seed> {
    let causes = [
        ExitCause::Exited { code: 3 },
        ExitCause::Signaled { signal: 11, core_dumped: true },
        ExitCause::ProtocolError { message: "undecodable message".into() },
        ExitCause::Oom,
        ExitCause::Hung { silent_ms: 2150 },
        ExitCause::KilledByOperator,
    ];
    let mut reasons = vec![
        EndReason::Completed,
        EndReason::Closed,
        EndReason::IoError { message: "Connection reset by peer (os error 104)".into() },
        EndReason::HandlerError { message: "exec: no such file".into() },
        EndReason::Shutdown,
        EndReason::Preempted,
        EndReason::CommandExited { cause: ExitCause::Exited { code: 1 } },
        EndReason::CorruptFrame { message: "crc32c mismatch in frame 3".into() },
    ];
    reasons.extend(causes.into_iter().map(|cause| EndReason::WorkerDied { cause }));
    let counters = |stream| StreamCounters {
        stream: StreamId(stream),
        bytes_in: 1 << 20,
        bytes_out: 4096 * stream,
        stalled_us: 1500,
        corrupt_frames: stream % 2,
    };
    let mut messages = vec![
        ("ready".to_owned(), FromWorker::Ready { pid: 4711 }),
        ("heartbeat".to_owned(), FromWorker::Heartbeat),
        ("stats-1".to_owned(), FromWorker::Stats { streams: vec![counters(42)] }),
        ("stats-3".to_owned(), FromWorker::Stats { streams: (1..4).map(counters).collect() }),
    ];
    for (i, reason) in reasons.into_iter().enumerate() {
        let ended = Ended { stream: StreamId(40 + i as u64), reason, bytes_in: 1024, bytes_out: 300_000 };
        messages.push((format!("ended-{i}"), FromWorker::Ended(ended)));
    }
    messages.into_iter().map(|(name, m)| (name, postcard(&m))).collect()
}

/// What the daemon sends a streamlet.
pub fn channel_to_worker() -> Vec<Seed> {
    let handlers = [
        HandlerSpec::Echo { framing: None },
        HandlerSpec::Exec { command: vec!["/usr/bin/wc".into(), "-c".into()], direct: false },
        HandlerSpec::Exec { command: vec!["/bin/cat".into()], direct: true },
        HandlerSpec::Echo { framing: Some(OnCorrupt::End) },
        HandlerSpec::Echo { framing: Some(OnCorrupt::Drop) },
        HandlerSpec::Relay { framing: None },
        HandlerSpec::Relay { framing: Some(OnCorrupt::Drop) },
    ];
    let mut messages = Vec::new();
    for (i, handler) in handlers.into_iter().enumerate() {
        let init = Init {
            worker: WorkerId(7),
            pool: "echo".into(),
            handler,
            stats_interval_ms: 1000,
            heartbeat_interval_ms: 500,
        };
        messages.push((format!("init-{i}"), ToWorker::Init(init)));
    }
    let labels = BTreeMap::from([("route".to_owned(), "/v1/feed".to_owned()), ("zone".to_owned(), "a".to_owned())]);
    messages.extend([
        (
            "assign-plain".to_owned(),
            ToWorker::Assign(Assign {
                stream: StreamId(42),
                tenant: "default".into(),
                labels: BTreeMap::new(),
                rate: None,
                ingress: None,
            }),
        ),
        (
            "assign-rated".to_owned(),
            ToWorker::Assign(Assign {
                stream: StreamId(43),
                tenant: "acme".into(),
                labels,
                rate: Some(125_000),
                ingress: Some(1_000_000),
            }),
        ),
        ("close".to_owned(), ToWorker::Close { stream: StreamId(42) }),
        ("update-rate".to_owned(), ToWorker::UpdateRate { stream: StreamId(43), rate: 500_000 }),
        ("upstream".to_owned(), ToWorker::Upstream { stream: StreamId(44) }),
    ]);
    messages.into_iter().map(|(name, m)| (name, postcard(&m))).collect()
}

/// Demand history files as the daemon writes them.
pub fn history_file() -> Vec<Seed> {
    let pool = |first_minute, arrivals: Vec<u32>, mean_duration_ms, durations| PoolHistory {
        first_minute,
        arrivals: arrivals.into(),
        mean_duration_ms,
        durations,
    };
    let day: Vec<u32> = (0..1440).map(|m| 20 + (m % 97) * 3).collect();
    let longest = "p".repeat(64);
    let files = [
        ("empty", vec![]),
        ("one-pool", vec![("echo", pool(29_000_000, vec![4, 0, 7], 1500.0, 12))]),
        (
            "missing-minutes",
            vec![
                ("echo", pool(29_000_000, vec![4, MISSING, MISSING, 9, 0], 812.25, 1000)),
                ("video", pool(29_000_010, vec![MISSING, 1, 2], 0.0, 0)),
            ],
        ),
        ("a-day", vec![("llm", pool(29_001_440, day, 8400.5, 48_000))]),
        ("far-future", vec![("x", pool(history::codec::MAX_FIRST_MINUTE, vec![1], 1e12, u64::MAX))]),
        ("longest-name", vec![(longest.as_str(), pool(0, vec![], 3.0, 1)), ("q", pool(5, vec![0], 0.5, 2))]),
    ];
    files
        .into_iter()
        .map(|(name, pools)| {
            let file = HistoryFile { pools: pools.into_iter().map(|(n, p)| (n.to_owned(), p)).collect() };
            (name.to_owned(), history::encode(&file))
        })
        .collect()
}

const POOL: &str =
    "[pools.echo]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 2 }\nstreams_per_worker = 4\n";

/// Configuration files: the shipped ones, and one for each table.
pub fn config() -> Vec<Seed> {
    let shipped = [
        ("systemd", include_str!("../../systemd/streamletd.toml")),
        ("default", include_str!("../../crates/config/src/default.toml")),
        ("bench-azure", include_str!("../../benches/autoscale/azure.toml")),
        ("bench-nasa-spread", include_str!("../../benches/autoscale/nasa-spread.toml")),
    ];
    let tables = [
        ("daemon", "[daemon]\nsocket = \"/run/s.sock\"\nworker_binary = \"/usr/bin/streamlet-worker\"\nshutdown_timeout = \"250ms\"\nstats_interval = \"2s\"\nstate_dir = \"/var/lib/streamlet\"\n"),
        ("sandbox", "[sandbox]\nrequired = false\ncgroup_root = \"/sys/fs/cgroup/system.slice/s.service\"\nuids = \"70000-70099\"\n"),
        ("limits", "limits = { cpu = 0.5, memory = \"64MiB\", pids = 64, nofile = 256, core = \"0\", fsize = \"1GiB\" }\nnetwork = \"host\"\nuser = \"nobody\"\nreadonly_root = true\n"),
        ("quota", "[capacity]\negress = \"1Gbit\"\nburst = \"0s\"\n[tenants.default]\nmax_streams = 5\n[tenants.acme]\nmax_streams = 50\n[regions.distance]\n\"eu-west:us-east\" = 80\n"),
        ("pool-quota", "egress = \"400Mbit\"\nplacement = \"geo\"\npreempt = true\ndefault_rate = { min = \"1Mbit\", max = \"8MiB/s\" }\nlabels = { region = \"eu-west\" }\nworker_labels = [{ zone = \"a\" }, { zone = \"b\" }]\nprefer = { zone = \"a\" }\n"),
        ("access", "[access]\nsocket_group = \"root\"\ndefault = \"none\"\nviewer = { uids = [1000, \"nobody\"], gids = [] }\ngateway = { gids = [\"root\"] }\nadmin = { uids = [0] }\n"),
        ("metrics", "[metrics]\nlisten = \"unix:/run/streamlet/metrics.sock\"\n"),
        ("autoscale", "autoscale = { mode = \"predictive\", lead = \"90s\", idle_grace = \"10s\", headroom = 0.5 }\nspare = true\n"),
        ("monitor", "on_worker_exit = \"migrate\"\nheartbeat_timeout = \"2s\"\nrestart = { initial = \"0ms\", max = \"30s\", multiplier = 2.0, jitter = 0.2, intensity = 5, period = \"10s\", cooldown = \"60s\", healthy_after = \"30s\" }\n"),
    ];
    let handlers = [
        ("exec", "[pools.run]\nhandler = { kind = \"exec\", command = [\"/bin/cat\"], direct = true }\nworkers = { min = 0, max = 3, min_free = 1 }\nstreams_per_worker = 1\n"),
        ("relay", "[pools.relay]\nhandler = { kind = \"relay\", upstream = \"tcp://127.0.0.1:9000\" }\nupstream_allow = [\"unix:/run/app/backup.sock\", \"tcp://[::1]:9001\"]\nframing = \"crc32c\"\non_corrupt = \"drop\"\ningress_limit = true\nworkers = { min = 1, max = 1 }\nstreams_per_worker = 64\n"),
        ("short-forms", "[pools.bare]\nhandler = \"echo\"\n\n[pools.few]\nhandler = \"echo\"\nworkers = { max = 1 }\ndefault_rate = { min = \"1Mbps\", max = \"1 MB/s\" }\n"),
        ("framed-echo", "[pools.framed]\nhandler = { kind = \"echo\" }\nframing = \"crc32c\"\non_corrupt = \"end\"\nworkers = { min = 1, max = 1 }\nstreams_per_worker = 8\nplacement = \"round-robin\"\n"),
    ];
    let mut seeds: Vec<Seed> = shipped.iter().map(|(n, t)| (n.to_string(), t.as_bytes().to_vec())).collect();
    for (name, table) in tables {
        let text = if table.starts_with('[') { format!("{table}{POOL}") } else { format!("{POOL}{table}") };
        seeds.push((name.to_owned(), text.into_bytes()));
    }
    for (name, pool) in handlers {
        seeds.push((name.to_owned(), pool.as_bytes().to_vec()));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every seed is a valid input of its kind: the fuzzer starts past the
    /// decoder's first refusal.
    #[test]
    fn seeds_are_valid() {
        for (_, stream) in control_request() {
            let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
            let hello = &stream[4..4 + len];
            let (_, encoding) = streamlet_proto::handshake::accept_hello(hello).unwrap();
            let request: Request = encoding.decode(&stream[8 + len..]).unwrap();
            assert!(request.id > 0);
        }
        assert!(control_request().len() >= 40, "{} requests documented", control_request().len() / 2);
        assert!(server_message().len() >= 30);
        for (_, bytes) in channel_from_worker() {
            streamlet_proto::channel::decode::<FromWorker>(&bytes).unwrap();
        }
        for (_, bytes) in channel_to_worker() {
            streamlet_proto::channel::decode::<ToWorker>(&bytes).unwrap();
        }
        for (name, bytes) in history_file() {
            assert!(history::decode(&bytes).is_ok(), "{name}");
        }
        for (name, text) in config() {
            let text = String::from_utf8(text).unwrap();
            if let Err(e) = streamlet_config::Config::parse(&text, &name) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    #[ignore = "writes fuzz/corpus/*/seed-*"]
    fn write_seeds() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (target, seeds) in all() {
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in seeds {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
}
