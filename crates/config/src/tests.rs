//! The configuration's tests: each key parsed, checked and reported.

use streamlet_balance::policies::PolicyKind;
use streamlet_proto::worker::{HandlerSpec, OnCorrupt};

use super::*;
use crate::restart::RestartPolicy;

fn error(text: &str) -> ConfigError {
    Config::parse(text, "test.toml").unwrap_err()
}

const POOL: &str =
    "[pools.echo]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 2 }\nstreams_per_worker = 4\n";

#[test]
fn the_embedded_default_is_one_echo_pool_of_two_by_eight() {
    let config = Config::embedded();
    assert_eq!(config.source, EMBEDDED);
    let echo = &config.pools["echo"];
    assert_eq!((echo.workers_min, echo.workers_max, echo.streams_per_worker), (2, 2, 8));
    assert_eq!(echo.handler, HandlerSpec::Echo { framing: None });
    assert_eq!(echo.placement, PolicyKind::LeastConnections);
}

/// A pool whose streamlets would run out of descriptors before they are
/// full is refused, with what to change.
#[test]
fn streams_per_worker_must_fit_the_streamlets_descriptors() {
    let many = POOL.replace("streams_per_worker = 4", "streams_per_worker = 5000");
    let e = error(&many);
    assert_eq!(e.key, "pools.echo.streams_per_worker");
    assert!(e.reason.contains("limits.nofile of 1024") && e.reason.contains("raise limits.nofile"), "{e}");
    Config::parse(&format!("{many}limits = {{ nofile = 8192 }}\n"), "x").unwrap();
    let exec = "[pools.run]\nhandler = { kind = \"exec\", command = [\"/bin/cat\"] }\nworkers = { min = 1, max = 1 }\nstreams_per_worker = 300\n";
    assert!(error(exec).reason.contains("1216 descriptors"), "a command's pipes count: {}", error(exec));
}

#[test]
fn an_exec_command_the_sandbox_hides_is_refused_with_the_reason() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let script = dir.path().join("cmd");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pool = |command: &str| {
        format!("[pools.run]\nhandler = {{ kind = \"exec\", command = [\"{command}\"] }}\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 1\n")
    };
    let e = error(&pool(&script.display().to_string()));
    assert_eq!(e.key, "pools.run.handler.command");
    assert!(e.reason.contains("is under /tmp") && e.reason.contains("private"), "{e}");
    let e = error(&pool("/dev/shm/x"));
    assert!(e.reason.contains("is under /dev"), "{e}");
    let e = error(&pool("/proc/self/exe"));
    assert!(e.reason.contains("is under /proc"), "{e}");
    Config::parse(&pool("/bin/cat"), "x").unwrap();
}

#[test]
fn the_root_is_read_only_unless_a_pool_with_a_user_says_otherwise() {
    let config = Config::parse(POOL, "x").unwrap();
    assert!(config.pools["echo"].readonly_root, "the default");
    let e = error(&format!("{POOL}readonly_root = false\n"));
    assert_eq!(e.key, "pools.echo.readonly_root");
    assert!(e.reason.contains("needs a `user`") && e.reason.contains("set-uid"), "{e}");
    let config = Config::parse(&format!("{POOL}readonly_root = false\nuser = \"nobody\"\n"), "x").unwrap();
    assert!(!config.pools["echo"].readonly_root);
}

#[test]
fn a_pool_that_could_reach_the_control_socket_is_refused() {
    let e = error(&format!("[access]\nsocket_group = \"nogroup\"\n\n{POOL}user = \"nobody\"\ngroup = \"nogroup\"\n"));
    assert_eq!(e.key, "pools.echo.group");
    assert!(e.reason.contains("control socket's group"), "{e}");
    // nobody's own group is nogroup: a member, whatever the pool's group.
    let e = error(&format!("[access]\nsocket_group = \"nogroup\"\n\n{POOL}user = \"nobody\"\ngroup = \"daemon\"\n"));
    assert_eq!(e.key, "pools.echo.user");
    let e = error(&format!("[sandbox]\nuids = \"60000-61000\"\n\n[access]\nsocket_group = 60500\n\n{POOL}"));
    assert_eq!(e.key, "access.socket_group");
    Config::parse(&format!("[access]\nsocket_group = \"daemon\"\n\n{POOL}user = \"nobody\"\n"), "x").unwrap();
}

#[test]
fn the_documented_example_is_valid() {
    let config = Config::parse(include_str!("../../../systemd/streamletd.toml"), "example").unwrap();
    assert_eq!(config.pools["echo"].streams_per_worker, 8);
    assert_eq!(config.daemon.shutdown_timeout, Duration::from_secs(5));
}

/// The example's header says its values are the defaults unless a
/// comment says otherwise: the comments that do are for the socket (the
/// default as root), `[sandbox] required`, `[tenants.default]` and the
/// pool's `limits`; everything else must be what a file without the key
/// gets, and the embedded default's pool is the example's.
#[test]
fn the_documented_example_shows_the_defaults() {
    let example = Config::parse(include_str!("../../../systemd/streamletd.toml"), "example").unwrap();
    let bare = Config::parse("[pools.echo]\nhandler = { kind = \"echo\" }\n", "bare").unwrap();
    assert_eq!(example.daemon.socket.as_deref(), Some(Path::new("/run/streamlet/streamletd.sock")));
    assert!(example.sandbox.required && !bare.sandbox.required);
    assert_eq!((example.quota.default_max_streams, bare.quota.default_max_streams), (Some(100), None));
    let echo = PoolConfig { limits: Limits::default(), ..(*example.pools["echo"]).clone() };
    assert_eq!(echo, *bare.pools["echo"], "the example's pool, but for its limits, is all defaults");
    assert_eq!(*Config::embedded().pools["echo"], *bare.pools["echo"], "and so is the embedded one");
    let daemon = |c: &Config| {
        let d = &c.daemon;
        (d.worker_binary.clone(), d.shutdown_timeout, d.stats_interval, d.state_dir.clone(), d.idle_timeout)
    };
    assert_eq!(daemon(&example), daemon(&bare));
    assert_eq!((example.sandbox.cgroup_root.clone(), example.sandbox.uids), (None, sandbox::DEFAULT_UIDS));
    assert_eq!((example.quota.egress, example.quota.burst), (bare.quota.egress, bare.quota.burst));
    assert_eq!((&example.access, &example.metrics), (&bare.access, &bare.metrics));
}

#[test]
fn a_pool_without_workers_or_streams_per_worker_gets_two_streamlets_of_eight() {
    let pool = |keys: &str| {
        let config = Config::parse(&format!("[pools.p]\nhandler = {{ kind = \"echo\" }}\n{keys}"), "x").unwrap();
        let p = &config.pools["p"];
        (p.workers_min, p.workers_max, p.streams_per_worker)
    };
    assert_eq!(pool(""), (DEFAULT_WORKERS, DEFAULT_WORKERS, DEFAULT_STREAMS_PER_WORKER));
    assert_eq!(pool(""), (2, 2, 8));
    assert_eq!(pool("workers = { max = 10 }"), (2, 10, 8), "min stays 2");
    assert_eq!(pool("workers = { max = 1 }"), (1, 1, 8), "min comes down to max");
    assert_eq!(pool("workers = { min = 5 }"), (5, 5, 8), "max comes up to min");
    assert_eq!(pool("workers = { min = 0 }\nstreams_per_worker = 3"), (0, 2, 3));
    let e = error("[pools.p]\nhandler = { kind = \"echo\" }\nworkers = { max = 0 }\n");
    assert_eq!(e.key, "pools.p.workers.max");
}

#[test]
fn the_issue_example_parses() {
    let text = "[daemon]\nsocket = \"/run/streamlet/streamletd.sock\"\n\n[pools.echo]\nhandler = { kind = \"echo\" }\nworkers = { min = 2, max = 2 }\nstreams_per_worker = 8\nplacement = \"least-connections\"\n";
    let config = Config::parse(text, "x").unwrap();
    assert_eq!(config.daemon.socket.as_deref(), Some(Path::new("/run/streamlet/streamletd.sock")));
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let e = error(&format!("{POOL}colour = \"red\"\n"));
    assert_eq!(e.file, "test.toml");
    assert!(e.reason.contains("colour"), "{e}");
    assert!(e.key.starts_with("pools.echo"), "{e}");
}

#[test]
fn a_bad_value_names_its_key() {
    let e = error(&POOL.replace("min = 1", "min = 3"));
    assert_eq!(e.key, "pools.echo.workers.min");
    assert!(e.reason.contains("more than workers.max"), "{e}");
    let e = error(&POOL.replace("streams_per_worker = 4", "streams_per_worker = 0"));
    assert_eq!(e.key, "pools.echo.streams_per_worker");
    let e = error(&POOL.replace("min = 1", "min = -1"));
    assert_eq!(e.key, "pools.echo.workers.min", "{e}");
}

#[test]
fn metrics_listen_on_loopback_or_a_unix_socket_only() {
    use crate::MetricsListen;
    let with = |listen: &str| Config::parse(&format!("[metrics]\nlisten = {listen:?}\n{POOL}"), "x");
    assert_eq!(with("127.0.0.1:9464").unwrap().metrics, Some(MetricsListen::Tcp("127.0.0.1:9464".parse().unwrap())));
    assert_eq!(with("[::1]:9464").unwrap().metrics, Some(MetricsListen::Tcp("[::1]:9464".parse().unwrap())));
    assert_eq!(with("unix:/run/m.sock").unwrap().metrics, Some(MetricsListen::Unix("/run/m.sock".into())));
    let e = with("0.0.0.0:9464").unwrap_err();
    assert_eq!(e.key, "metrics.listen");
    assert!(e.reason.contains("loopback"), "{e}");
    assert_eq!(with("unix:relative").unwrap_err().key, "metrics.listen");
    assert_eq!(with("localhost").unwrap_err().key, "metrics.listen");
    assert_eq!(Config::parse(POOL, "x").unwrap().metrics, None, "off unless asked for");
}

#[test]
fn the_autoscale_keys_parse_into_the_pool_rules() {
    let text = POOL.replace("max = 2 }", "max = 64, min_free = 1 }")
        + "autoscale = { mode = \"predictive\", lead = \"90s\", idle_grace = \"10s\", headroom = 0.5 }\n";
    let config = Config::parse(&text, "x").unwrap();
    let rules = config.pools["echo"].rules();
    assert_eq!((rules.min, rules.max, rules.min_free, rules.streams_per_worker), (1, 64, 1, 4));
    assert_eq!((rules.mode, rules.idle_grace_ms, rules.headroom), (streamlet_autoscale::Mode::Predictive, 10_000, 0.5));
    assert!(rules.lookahead);
    assert_eq!(config.pools["echo"].autoscale.lead, Duration::from_secs(90));
    // Without the table: reactive, 60 s lead, 30 s grace, 20% headroom.
    let plain = Config::parse(POOL, "x").unwrap();
    assert_eq!(plain.pools["echo"].autoscale, Autoscale::default());
    assert_eq!(plain.pools["echo"].min_free, 0);
}

#[test]
fn bad_autoscale_keys_name_themselves() {
    let e = error(&format!("{POOL}autoscale = {{ mode = \"psychic\" }}\n"));
    assert_eq!(e.key, "pools.echo.autoscale.mode", "{e}");
    assert!(e.reason.contains("forecast-only"), "the known modes are listed: {e}");
    let e = error(&format!("{POOL}autoscale = {{ headroom = -1.0 }}\n"));
    assert_eq!(e.key, "pools.echo.autoscale.headroom", "{e}");
    let e = error(&format!("{POOL}autoscale = {{ lead = \"0s\" }}\n"));
    assert_eq!(e.key, "pools.echo.autoscale.lead", "{e}");
    let e = error(&format!("{POOL}autoscale = {{ idle_grace = \"soon\" }}\n"));
    assert_eq!(e.key, "pools.echo.autoscale.idle_grace", "{e}");
    let e = error(&POOL.replace("max = 2 }", "max = 2, min_free = 3 }"));
    assert_eq!(e.key, "pools.echo.workers.min_free", "{e}");
    let e = error(&format!("[daemon]\nstate_dir = \"relative\"\n{POOL}"));
    assert_eq!(e.key, "daemon.state_dir", "{e}");
}

#[test]
fn an_unknown_handler_or_placement_lists_the_known_ones() {
    let e = error(&POOL.replace("\"echo\" }", "\"rot13\" }"));
    assert!(e.key.starts_with("pools.echo.handler"), "{e}");
    assert!(e.reason.contains("rot13") && e.reason.contains("echo"), "{e}");
    let e = error(&format!("{POOL}placement = \"random\"\n"));
    assert_eq!(e.key, "pools.echo.placement");
    assert!(e.reason.contains("least-connections"), "{e}");
}

#[test]
fn syntax_errors_carry_the_line() {
    let e = error("[pools.echo\n");
    assert_eq!(e.line, Some(1), "{e}");
    assert!(e.to_string().starts_with("test.toml:1: "), "{e}");
    let e = error(&format!("{POOL}\n\nworkers = {{ min = 1,, }}\n"));
    assert_eq!(e.line, Some(7), "{e}");
}

/// The issue's example: an unknown key on line 7 is reported at line 7
/// (it was line 6), with the key it is likely a typo of.
#[test]
fn unknown_keys_are_reported_at_their_own_line() {
    let text = "[daemon]\nshutdown_timeout = \"5s\"\n\n[pools.echo]\nhandler = { kind = \"echo\" }\nworkers = { min = 2, max = 2 }\nplacment = \"pack\"\nstreams_per_worker = 8\n";
    let e = error(text);
    assert_eq!((e.line, e.key.as_str()), (Some(7), "pools.echo.placment"));
    assert!(e.reason.starts_with("unknown key `placment`: did you mean `placement`? remove it or write one of"), "{e}");
    assert!(e.to_string().starts_with("test.toml:7: key `pools.echo.placment`: "), "{e}");
    let e = error("[pools.echo]\nhandler = { kind = \"echo\", colour = \"red\" }\n");
    assert_eq!(e.line, Some(2), "inside an inline table: {e}");
    let e = error("\n\n[deamon]\n");
    assert_eq!((e.line, e.key.as_str()), (Some(3), "deamon"), "{e}");
    assert!(e.reason.contains("did you mean `daemon`?"), "{e}");
}

/// A wrong value, found by the parser or by the checks after it, is
/// reported at its line, in the file's words rather than serde's.
#[test]
fn wrong_values_are_reported_at_their_line() {
    let e = error(&format!("{POOL}\nplacement = \"pak\"\n"));
    assert_eq!((e.line, e.key.as_str()), (Some(6), "pools.echo.placement"));
    assert!(e.reason.contains("did you mean \"pack\"?"), "{e}");
    let e = error(&POOL.replace("streams_per_worker = 4", "streams_per_worker = \"4\""));
    assert_eq!((e.line, e.key.as_str()), (Some(4), "pools.echo.streams_per_worker"));
    assert_eq!(e.reason, "found string \"4\", expected a whole number from 0 to 4294967295");
    let e = error(&format!("[daemon]\n\nshutdown_timeout = \"soon\"\n{POOL}"));
    assert_eq!((e.line, e.key.as_str()), (Some(3), "daemon.shutdown_timeout"));
    let e = error(&format!("{POOL}\n[pools.echo.restart]\njitter = 2.0\n"));
    assert_eq!((e.line, e.key.as_str()), (Some(7), "pools.echo.restart.jitter"), "{e}");
    let e = error(&format!("{POOL}upstream_allow = [\n  \"tcp://1.2.3.4:5\",\n  \"udp://x\"]\n"));
    assert_eq!(e.line, Some(7), "{e}");
    let e = error("[tenants.acme]\nmax_streams = 1\n");
    assert_eq!((e.line, e.key.as_str()), (None, "pools"), "no pool, no line: {e}");
    assert!(e.reason.contains("add a [pools.NAME] table"), "{e}");
}

/// Every missing key at once, in the order of the file, each at the
/// line of the table it belongs in, each saying what to write.
#[test]
fn missing_keys_are_reported_all_at_once() {
    let text = "[pools.a]\nworkers = { max = 4 }\n\n[pools.b]\nhandler = { kind = \"exec\" }\ndefault_rate = { min = \"1Mbit\" }\n\n[pools.c]\nhandler = { kind = \"relay\" }\n\n[tenants.acme]\n";
    let e = error(text);
    let problems = e.problems();
    let found: Vec<(Option<usize>, &str)> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        found,
        [
            (Some(1), "pools.a.handler"),
            (Some(5), "pools.b.handler.command"),
            (Some(6), "pools.b.default_rate.max"),
            (Some(9), "pools.c.handler.upstream"),
            (Some(11), "tenants.acme.max_streams"),
        ]
    );
    let text = e.to_string();
    assert_eq!(text.lines().count(), 5, "a line each: {text}");
    assert!(text.lines().all(|l| l.starts_with("test.toml:")), "{text}");
    assert!(problems[0].reason.contains("add handler = \"echo\""), "{text}");
    assert!(problems[1].reason.contains("add command = [\"/usr/bin/wc\", \"-c\"]"), "{text}");
    assert!(problems[2].reason.contains("both min and max"), "{text}");
    assert!(problems[3].reason.contains("add upstream = \"tcp://IP:PORT\""), "{text}");
    assert!(problems[4].reason.contains("add max_streams = N"), "{text}");
}

/// `framing` and `on_corrupt` become the handler's `framing`, the same for
/// echo and relay; exec cannot be framed.
#[test]
fn framing_is_a_field_of_the_echo_and_relay_handlers() {
    let relay = "handler = { kind = \"relay\", upstream = \"tcp://127.0.0.1:9000\" }";
    let cases = [
        ("handler = \"echo\"", "crc32c", HandlerSpec::Echo { framing: Some(OnCorrupt::Drop) }),
        ("handler = \"echo\"", "none", HandlerSpec::Echo { framing: None }),
        (relay, "crc32c", HandlerSpec::Relay { framing: Some(OnCorrupt::Drop) }),
        (relay, "none", HandlerSpec::Relay { framing: None }),
    ];
    for (handler, framing, spec) in cases {
        let text = format!("[pools.p]\n{handler}\nframing = \"{framing}\"\non_corrupt = \"drop\"\n");
        assert_eq!(Config::parse(&text, "x").unwrap().pools["p"].handler, spec, "{text}");
    }
    let e = error("[pools.p]\nhandler = { kind = \"exec\", command = [\"/bin/cat\"] }\nframing = \"crc32c\"\n");
    assert_eq!((e.line, e.key.as_str()), (Some(3), "pools.p.framing"), "{e}");
    assert!(e.reason.contains("applies to the echo and relay handlers"), "{e}");
}

/// `handler = "echo"` for a handler without required options; for the
/// others, what to write.
#[test]
fn a_handler_without_options_may_be_written_by_its_name() {
    let short = Config::parse("[pools.echo]\nhandler = \"echo\"\n", "x").unwrap();
    assert_eq!(short.pools["echo"].handler, HandlerSpec::Echo { framing: None });
    let framed = Config::parse("[pools.echo]\nhandler = \"echo\"\nframing = \"crc32c\"\n", "x").unwrap();
    assert_eq!(framed.pools["echo"].handler, HandlerSpec::Echo { framing: Some(OnCorrupt::End) });
    for (name, example) in [("exec", handler::EXEC_EXAMPLE), ("relay", handler::RELAY_EXAMPLE)] {
        let e = error(&format!("[pools.p]\n\nhandler = \"{name}\"\n"));
        assert_eq!((e.line, e.key.as_str()), (Some(3), "pools.p.handler"), "{e}");
        assert!(e.reason.contains("written as a table") && e.reason.contains(example), "{e}");
        assert!(!e.reason.contains("RawHandler") && !e.reason.contains("internally tagged"), "{e}");
    }
    let e = error("[pools.p]\nhandler = \"rot13\"\n");
    assert!(e.reason.starts_with("\"rot13\" is not a handler: write handler = \"echo\""), "{e}");
    let e = error("[pools.p]\nhandler = 3\n");
    assert!(e.reason.contains("expected a handler: \"echo\""), "{e}");
    let e = error("[pools.p]\nhandler = { command = [\"/bin/cat\"] }\n");
    assert!(e.reason.starts_with("the handler's table has no kind: write handler = \"echo\""), "{e}");
    let e = error("[pools.p]\nhandler = \"echo\"\nlimits = { cpu = true }\n");
    assert_eq!((e.line, e.key.as_str()), (Some(3), "pools.p.limits.cpu"));
    assert_eq!(e.reason, "expected a number of cores, like 0.5 or \"0.5\"", "no serde words: {e}");
}

#[test]
fn sandbox_keys_are_resolved_and_checked() {
    let text = format!(
        "[sandbox]\nrequired = true\nuids = \"70000-70099\"\n{POOL}limits = {{ cpu = \"0.5\", memory = \"64MiB\", pids = 64, nofile = 256 }}\nnetwork = \"host\"\nuser = \"nobody\"\nreadonly_root = true\n"
    );
    let config = Config::parse(&text, "x").unwrap();
    assert!(config.sandbox.required);
    assert_eq!(config.sandbox.uids, (70000, 70099));
    let pool = &config.pools["echo"];
    assert_eq!(pool.limits.cpu_cores, Some(0.5));
    assert_eq!(pool.limits.memory, Some(64 << 20));
    assert_eq!(pool.limits.pids, Some(64));
    assert_eq!(pool.limits.nofile, 256);
    assert_eq!(pool.network, Network::Host);
    assert!(matches!(pool.run_as, RunAs::User { uid: 65534, .. }));
    assert!(pool.readonly_root);

    let defaults = Config::parse(POOL, "x").unwrap();
    assert_eq!(defaults.pools["echo"].network, Network::None, "no network by default");
    assert_eq!(defaults.pools["echo"].run_as, RunAs::Dynamic);
    assert!(!defaults.sandbox.required);

    let e = error(&format!("{POOL}limits = {{ memory = \"64MB\" }}\n"));
    assert_eq!(e.key, "pools.echo.limits.memory");
    let e = error(&format!("{POOL}limits = {{ cpu = 0 }}\n"));
    assert_eq!(e.key, "pools.echo.limits.cpu");
    let e = error(&format!("{POOL}user = \"no-such-user-here\"\n"));
    assert_eq!(e.key, "pools.echo.user");
    let e = error(&format!("{POOL}user = \"root\"\n"));
    assert!(e.reason.contains("never runs as root"), "{e}");
    let e = error(&format!("{POOL}network = \"bridge\"\n"));
    assert_eq!(e.key, "pools.echo.network");
    let e = error(&format!("[sandbox]\nuids = \"5-1\"\n{POOL}"));
    assert_eq!(e.key, "sandbox.uids");
    for bad in [".", "..", "a/b", "", "/", "/sys/../etc", "/a/./b"] {
        let e = error(&format!("[sandbox]\ncgroup_root = \"{bad}\"\n{POOL}"));
        assert_eq!(e.key, "sandbox.cgroup_root", "{bad:?}");
    }
    for good in ["streamlet-test", "/sys/fs/cgroup/system.slice/streamletd.service"] {
        Config::parse(&format!("[sandbox]\ncgroup_root = \"{good}\"\n{POOL}"), "x").unwrap();
    }
}

#[test]
fn the_monitor_keys_of_the_issue_parse_and_are_checked() {
    let text = format!(
        "{POOL}on_worker_exit = \"migrate\"\nheartbeat_timeout = \"2s\"\nrestart = {{ initial = \"0ms\", max = \"30s\", multiplier = 2.0, jitter = 0.2, intensity = 5, period = \"10s\", cooldown = \"60s\", healthy_after = \"30s\" }}\n"
    );
    let config = Config::parse(&text, "x").unwrap();
    let echo = &config.pools["echo"];
    assert_eq!(echo.on_worker_exit, OnWorkerExit::Migrate);
    assert_eq!(echo.heartbeat_timeout, Duration::from_secs(2));
    assert_eq!(echo.restart, RestartPolicy::default(), "the issue's values are the defaults");
    let plain = Config::parse(POOL, "x").unwrap();
    assert_eq!(plain.pools["echo"].on_worker_exit, OnWorkerExit::Close);
    assert_eq!(plain.pools["echo"].heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT);

    for (line, key) in [
        ("on_worker_exit = \"retry\"", "pools.echo.on_worker_exit"),
        ("heartbeat_timeout = \"10ms\"", "pools.echo.heartbeat_timeout"),
        ("heartbeat_timeout = \"soon\"", "pools.echo.heartbeat_timeout"),
        ("restart = { multiplier = 0.5 }", "pools.echo.restart.multiplier"),
        ("restart = { jitter = 2.0 }", "pools.echo.restart.jitter"),
        ("restart = { intensity = 0 }", "pools.echo.restart.intensity"),
        ("restart = { initial = \"1m\", max = \"30s\" }", "pools.echo.restart.initial"),
        ("restart = { period = \"0s\" }", "pools.echo.restart.period"),
        ("restart = { cooldown = \"later\" }", "pools.echo.restart.cooldown"),
        ("restart = { retries = 3 }", "pools.echo.restart"),
    ] {
        let e = error(&format!("{POOL}{line}\n"));
        assert!(e.key.starts_with(key), "{line}: {e}");
    }
}

#[test]
fn worker_labels_go_over_the_pools_by_slot() {
    let text = format!("{POOL}labels = {{ region = \"eu-west\", tier = \"edge\" }}\nworker_labels = [{{ zone = \"a\" }}, {{ region = \"us-east\" }}]\n");
    let config = Config::parse(&text, "x").unwrap();
    let echo = &config.pools["echo"];
    let labels = |slot| echo.labels_of(slot).into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
    assert_eq!(labels(0), ["region=eu-west", "tier=edge", "zone=a"]);
    assert_eq!(labels(1), ["region=us-east", "tier=edge"]);
    assert_eq!(labels(2), labels(0), "slots past the list start it again");
    let too_many = format!("{POOL}worker_labels = [{{}}, {{}}, {{}}, {{}}, {{}}]\n");
    let e = error(&too_many);
    assert_eq!(e.key, "pools.echo.worker_labels");
    assert!(e.reason.contains("workers.max"), "{e}");
}

#[test]
fn a_geo_pool_weighs_the_configured_distances_against_load() {
    use streamlet_balance::{Labels, Request};
    // A streamlet in the stream's region with 7 of 8 streams (a share of
    // 0.875), and an empty one elsewhere: a distance under 87.5 makes the
    // empty one the better choice.
    let choice = |distance: u32| {
        let text = format!("{POOL}placement = \"geo\"\n[regions.distance]\n\"eu-west:us-east\" = {distance}\n");
        let config = Config::parse(&text, "x").unwrap();
        let mut placement = config.pools["echo"].placement(&config);
        let region = |r: &str| Labels::from([("region".to_owned(), r.to_owned())]);
        placement.add(1, 8, &region("us-east"));
        placement.add(2, 8, &region("eu-west"));
        for _ in 0..7 {
            placement.occupy(1);
        }
        placement.place(&Request { region: Some("us-east".into()) })
    };
    assert_eq!(choice(80), Some(2));
    assert_eq!(choice(95), Some(1));
}

#[test]
fn the_quota_keys_of_the_issue_parse() {
    let text = r#"
[capacity]
egress = "1Gbit"

[pools.video]
handler = { kind = "echo" }
workers = { min = 1, max = 4 }
streams_per_worker = 8
egress = "400Mbit"
placement = "geo"
preempt = true
default_rate = { min = "1Mbit", max = "8Mbit" }
labels = { region = "eu-west" }

[regions.distance]
"eu-west:us-east" = 80

[tenants.default]
max_streams = 5
[tenants.acme]
max_streams = 50
"#;
    let config = Config::parse(text, "x").unwrap();
    assert_eq!(config.quota.burst, quota::DEFAULT_BURST);
    assert_eq!(config.quota.egress, Some(125_000_000));
    assert_eq!(config.quota.default_max_streams, Some(5));
    assert_eq!(config.quota.tenants["acme"], 50);
    assert_eq!(config.quota.distances[&("us-east".to_owned(), "eu-west".to_owned())], 80, "symmetric");
    let video = &config.pools["video"];
    assert_eq!(video.egress, Some(50_000_000));
    assert_eq!(video.placement, PolicyKind::Geo);
    assert!(video.preempt);
    assert_eq!(video.default_rate, Some(RateRange { min: 125_000, max: 1_000_000 }));
    assert_eq!(video.labels["region"], "eu-west");

    let e = error(&format!("{POOL}default_rate = {{ min = \"8Mbit\", max = \"1Mbit\" }}\n"));
    assert_eq!(e.key, "pools.echo.default_rate.min");
    let e = error(&format!("[capacity]\negress = \"fast\"\n{POOL}"));
    assert_eq!(e.key, "capacity.egress");
    let e = error(&format!("[capacity]\nburst = \"5min\"\n{POOL}"));
    assert_eq!(e.key, "capacity.burst");
    let e = error(&format!("[capacity]\nburst = \"2m\"\n{POOL}"));
    assert!(e.key == "capacity.burst" && e.reason.contains("at most 60s"), "{e}");
    let e = error(&format!("[regions.distance]\n\"eu\" = 3\n{POOL}"));
    assert!(e.key.starts_with("regions.distance"), "{e}");
}

#[test]
fn rates_are_written_in_bits_or_bytes_per_second() {
    let text = format!("[capacity]\negress = \"1 Gbit/s\"\n{POOL}egress = \"400Mbps\"\ndefault_rate = {{ min = \"125kB/s\", max = \"1MiB/s\" }}\n");
    let config = Config::parse(&text, "x").unwrap();
    assert_eq!(config.quota.egress, Some(125_000_000));
    assert_eq!(config.pools["echo"].egress, Some(50_000_000));
    assert_eq!(config.pools["echo"].default_rate, Some(RateRange { min: 125_000, max: 1 << 20 }));
    let e = error(&format!("{POOL}egress = \"400MB\"\n"));
    assert_eq!(e.key, "pools.echo.egress");
    assert!(e.reason.contains("add /s") && e.reason.contains("8Mbps"), "{e}");
}

#[test]
fn pool_names_and_durations_are_checked() {
    let e = error(&POOL.replace("pools.echo", "pools.\"Echo Pool\""));
    assert_eq!(e.key, "pools.Echo Pool");
    let e = error(&format!("[daemon]\nshutdown_timeout = \"soon\"\n{POOL}"));
    assert_eq!(e.key, "daemon.shutdown_timeout");
    assert!(e.reason.contains("\"soon\""));
    let c = Config::parse(&format!("[daemon]\nshutdown_timeout = \"250ms\"\n{POOL}"), "x").unwrap();
    assert_eq!(c.daemon.shutdown_timeout, Duration::from_millis(250));
    assert_eq!(error("").key, "pools");
    let e = error(&format!("[daemon]\nworker_binary = \"relative/bin\"\n{POOL}"));
    assert_eq!(e.key, "daemon.worker_binary");
    let e = error(&format!("[daemon]\nsocket = \"/tmp/a\\u0000b\"\n{POOL}"));
    assert_eq!(e.key, "daemon.socket");
}

#[test]
fn listen_places_parse_and_no_two_pools_share_one() {
    let two = "[pools.a]\nhandler = \"echo\"\nlisten = [\"127.0.0.1:7000\", \"fd:a-tcp\"]\nlisten_tenant = \"web\"\n\n\
               [pools.b]\nhandler = \"echo\"\n";
    let config = Config::parse(two, "test").unwrap();
    let a = &config.pools["a"];
    assert_eq!(a.listen, [Listen::Tcp("127.0.0.1:7000".parse().unwrap()), Listen::Systemd("a-tcp".into())]);
    assert_eq!((a.listen_tenant.as_str(), config.pools["b"].listen_tenant.as_str()), ("web", "default"));
    let shared = format!("{two}listen = [\"fd:a-tcp\"]\n");
    let e = error(&shared).to_string();
    assert!(e.contains("pools.b.listen") && e.contains("fd:a-tcp is pool a's already"), "{e}");
    let e = error("[pools.a]\nhandler = \"echo\"\nlisten = [\"localhost:7000\"]\n").to_string();
    assert!(e.contains("pools.a.listen") && e.contains("no host names"), "{e}");
    let long = "t".repeat(129);
    let e = error(&format!("[pools.a]\nhandler = \"echo\"\nlisten_tenant = \"{long}\"\n")).to_string();
    assert!(e.contains("pools.a.listen_tenant") && e.contains("1 to 128 bytes"), "{e}");
}
