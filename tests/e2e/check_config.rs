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
