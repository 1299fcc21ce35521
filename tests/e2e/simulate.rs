//! `streamletctl simulate`: a trace in, what each policy would have done
//! out, with no daemon running.

use std::path::Path;
use std::process::Command;

use crate::support::STREAMLETCTL;

fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(STREAMLETCTL).arg("simulate").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn simulate_prints_the_six_totals_of_each_policy_as_json() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded pool: two streamlets (min = max = 2) of 8 streams. Twenty
    // streams at once: 16 fit, 4 are refused whatever the policy; four more
    // come after the first ones ended.
    let mut rows = String::from("at_ms,duration_ms\n");
    for _ in 0..20 {
        rows.push_str("1000,5000\n");
    }
    for at in [10_000, 11_000, 12_000, 13_000] {
        rows.push_str(&format!("{at},2000\n"));
    }
    let trace = write(dir.path(), "streams.csv", &rows);
    let csv = dir.path().join("runs.csv");
    let svg = dir.path().join("runs.svg");
    let (code, out, err) = simulate(&[
        "--trace",
        &trace,
        "--json",
        "--spawn-delay",
        "1s",
        "--csv",
        csv.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let policies = json.as_object().unwrap();
    assert_eq!(policies.len(), 3, "{out}");
    for policy in ["reactive", "lookahead", "predictive"] {
        let totals = policies[policy].as_object().unwrap();
        let mut fields: Vec<&str> = totals.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["admitted", "cold_wait_seconds", "cold_waits", "peak_workers", "rejected", "worker_seconds"],
            "{policy}"
        );
        assert_eq!(totals["admitted"], 20, "{policy}: {out}");
        assert_eq!(totals["rejected"], 4, "{policy}: {out}");
        assert_eq!(totals["cold_waits"], 0, "{policy}: nothing is starting to wait for");
        assert_eq!(totals["peak_workers"], 2, "{policy}");
        assert_eq!(totals["worker_seconds"], 120.0, "{policy}: two streamlets for the minute");
    }
    let csv = std::fs::read_to_string(csv).unwrap();
    assert_eq!(csv.lines().count(), 2, "a header and the one minute: {csv}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4, "demand and three policies (no forecast without history)");
    // The embedded pool is min = max: the chart says why its runs are alike,
    // where pools with room are, and its two streamlet-minutes as such.
    assert!(svg.contains("Note: every policy ran the pool at workers.max (2) throughout"), "{svg}");
    assert!(svg.contains("benches/autoscale/*.toml"), "{svg}");
    assert!(svg.contains("2 streamlet-minutes") && !svg.contains("streamlet-hours"), "{svg}");
}

#[test]
fn simulate_prints_a_table_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write(
        dir.path(),
        "minutes.csv",
        "minute,arrivals,observed\n2024-01-01T00:00:00,30,1\n2024-01-01T00:01:00,40,1\n",
    );
    let (code, out, err) =
        simulate(&["--trace", &trace, "--policy", "predictive", "--durations", "fixed:10s", "--seed", "3"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().find(|l| l.starts_with("POLICY")).expect(&out);
    for column in ["ADMITTED", "COLD_WAITS", "COLD_WAIT_S", "REJECTED", "WORKER_S", "PEAK_WORKERS"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(out.lines().any(|l| l.starts_with("predictive ")), "{out}");
    assert!(!out.contains("lookahead"), "one policy asked for: {out}");
}

#[test]
fn simulate_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write(
        dir.path(),
        "bad.csv",
        "minute,arrivals,observed\n2024-01-01T00:00:00,30,1\n2024-01-01T00:01:00,many,1\n",
    );
    let (code, _, err) = simulate(&["--trace", &trace, "--durations", "exp:30s"]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv: line 3") && err.contains("\"many\""), "{err}");

    let minutes = write(dir.path(), "minutes.csv", "minute,arrivals,observed\n2024-01-01T00:00:00,30,1\n");
    let (code, _, err) = simulate(&["--trace", &minutes]);
    assert_eq!(code, 1);
    assert!(err.contains("--durations exp:30s"), "{err}");

    let (code, _, err) = simulate(&["--trace", &minutes, "--durations", "exp:30s", "--policy", "eager"]);
    assert_eq!(code, 1);
    assert!(err.contains("reactive, lookahead, predictive or all"), "{err}");

    let (code, _, err) = simulate(&["--trace", &minutes, "--durations", "normal:3s"]);
    assert_eq!(code, 2, "clap refuses it: {err}");
    assert!(err.contains("exp:MEAN"), "{err}");

    let two_pools = write(
        dir.path(),
        "two.toml",
        "[pools.a]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 2 }\nstreams_per_worker = 4\n\
         [pools.b]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 2 }\nstreams_per_worker = 4\n",
    );
    let (code, _, err) = simulate(&["--trace", &minutes, "--durations", "exp:30s", "--config", &two_pools]);
    assert_eq!(code, 1);
    assert!(err.contains("--pool") && err.contains("a, b"), "{err}");
}

/// The embedded pool has two streamlets and no room to scale: every policy
/// runs it alike, and the table says why and where to look instead.
#[test]
fn simulate_says_when_no_policy_could_scale_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write(
        dir.path(),
        "minutes.csv",
        "minute,arrivals,observed\n2024-01-01T00:00:00,30,1\n2024-01-01T00:01:00,40,1\n",
    );
    let (code, out, err) = simulate(&["--trace", &trace, "--durations", "fixed:10s", "--seed", "3"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("POLICY")).skip(1).take(3).collect();
    let totals = |row: &str| row.split_whitespace().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert!(rows.windows(2).all(|w| totals(w[0]) == totals(w[1])), "alike: {rows:?}");
    let note = out.lines().find(|l| l.starts_with("note: ")).unwrap_or_else(|| panic!("no note: {out}"));
    assert!(note.contains("workers.max (2)") && note.contains("benches/autoscale/"), "{note}");

    // With room to scale, there is no such note.
    let elastic = write(
        dir.path(),
        "elastic.toml",
        "[pools.a]\nhandler = \"echo\"\nworkers = { min = 1, max = 40 }\nstreams_per_worker = 4\n",
    );
    let (code, out, err) =
        simulate(&["--trace", &trace, "--durations", "fixed:10s", "--seed", "3", "--config", &elastic]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("note: "), "{out}");
}

/// `simulate`, `completions` and `man` talk to no daemon: their help does not
/// offer `--socket` (still accepted, and ignored, for scripts that pass it).
#[test]
fn commands_without_a_daemon_do_not_offer_a_socket() {
    for command in ["simulate", "completions", "man"] {
        let out = Command::new(STREAMLETCTL).args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.contains("Usage"), "{command}: {help}");
        assert!(!help.contains("--socket"), "{command} --help: {help}");
    }
    let out = Command::new(STREAMLETCTL).args(["workers", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("/tmp/streamlet-UID/streamletd.sock"));
    let out = Command::new(STREAMLETCTL).args(["--socket", "/nowhere.sock", "man"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
