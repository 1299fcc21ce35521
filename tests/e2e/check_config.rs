//! `streamletd check-config`: every problem of a file with its line, key and
//! what to write.

use std::path::Path;
use std::process::Command;

use crate::support::STREAMLETD;

/// `check-config` on `text` written as `name` in a new directory: its exit
/// code, stdout and stderr.
fn check(name: &str, text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    run(&[Path::new("check-config"), &path])
}

fn run(args: &[&Path]) -> (Option<i32>, String, String) {
    let out = Command::new(STREAMLETD).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The issue's examples: a typo on line 7 is reported at line 7, every
/// missing key at once, and `handler = "echo"` is accepted.
#[test]
fn check_config_names_the_line_of_each_problem_and_what_to_write() {
    let typo = "[daemon]\nshutdown_timeout = \"5s\"\n\n[pools.echo]\nhandler = \"echo\"\nworkers = { min = 2, max = 2 }\nplacment = \"pack\"\n";
    let (code, _, err) = check("typo.toml", typo);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("typo.toml:7: key `pools.echo.placment`: unknown key"), "{err}");
    assert!(err.contains("did you mean `placement`?"), "{err}");

    let missing = "[pools.a]\nworkers = { max = 4 }\n\n[pools.b]\nhandler = { kind = \"exec\" }\n";
    let (code, _, err) = check("missing.toml", missing);
    assert_eq!(code, Some(64), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "both missing keys at once: {err}");
    assert!(
        lines.iter().all(|l| l.starts_with("streamletd: /") && l.contains("/missing.toml:")),
        "a problem a line: {err}"
    );
    assert!(
        lines[0].contains("missing.toml:1: key `pools.a.handler`: is missing")
            && lines[0].contains("add handler = \"echo\""),
        "{err}"
    );
    assert!(lines[1].contains("missing.toml:5: key `pools.b.handler.command`: is missing"), "{err}");

    let (code, _, err) = check("relay.toml", "[pools.r]\nhandler = \"relay\"\n");
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("relay.toml:2: key `pools.r.handler`: \"relay\" needs its upstream"), "{err}");
    assert!(err.contains(r#"handler = { kind = "relay", upstream = "tcp://127.0.0.1:9000" }"#), "{err}");

    let (code, out, err) = check("short.toml", "[pools.echo]\nhandler = \"echo\"\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok (1 pool: echo)"), "{out}");
}

/// `check-config FILE`, `check-config --config FILE` (as the daemon takes
/// it) and `--config FILE check-config` all check FILE; with none, or two
/// different ones, it says what to give.
#[test]
fn check_config_takes_the_file_as_an_argument_or_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[pools.echo]\nhandler = \"echo\"\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pools.echo]\nhandler = \"echo\"\nworkers = { min = 3, max = 2 }\n").unwrap();
    let check = Path::new("check-config");
    let config = Path::new("--config");
    for args in [vec![check, &good], vec![check, config, &good], vec![config, &good, check]] {
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("good.toml: ok (1 pool: echo)"), "{args:?}: {out}");
    }
    for args in [vec![check, &bad], vec![check, config, &bad], vec![config, &bad, check]] {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains("bad.toml:3: key `pools.echo.workers.min`"), "{args:?}: {err}");
    }
    let (code, _, err) = run(&[check]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`streamletd check-config FILE` or `streamletd check-config --config FILE`"), "{err}");
    let (code, _, err) = run(&[config, &bad, check, &good]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("two files to check") && err.contains("give one"), "{err}");
}

/// The help says how to give the file, shows no option the command ignores,
/// and the daemon's own help names every default socket.
#[test]
fn check_config_help_explains_its_file() {
    let (code, help, _) = run(&[Path::new("check-config"), Path::new("--help")]);
    assert_eq!(code, Some(0));
    assert!(help.contains("Usage: streamletd check-config [OPTIONS] [FILE]"), "{help}");
    assert!(help.contains("[FILE]  The configuration file to check"), "the argument is explained: {help}");
    assert!(help.contains("--config <FILE>  The configuration file to check"), "{help}");
    assert!(help.contains("`streamletd check-config --config FILE`"), "{help}");
    assert!(!help.contains("embedded default") && !help.contains("--log-format"), "nothing it ignores: {help}");
    let (code, help, _) = run(&[Path::new("--help")]);
    assert_eq!(code, Some(0));
    for socket in [
        "/run/streamlet/streamletd.sock",
        "$XDG_RUNTIME_DIR/streamlet/streamletd.sock",
        "/tmp/streamlet-UID/streamletd.sock without XDG_RUNTIME_DIR",
    ] {
        assert!(help.contains(socket), "{socket}: {help}");
    }
}
