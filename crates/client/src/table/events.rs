//! One line per lifecycle event, for `streamletctl events` (and any live
//! view): the time, the kind, then what happened.
//!
//! A line is escaped whole once it is made ([`escape`]): its fields (a
//! tenant, a reason a streamlet gave) can hold any text, and what the line
//! adds around them holds no control character and no backslash, so an event
//! with a new field is escaped without anyone thinking of it.

use streamlet_proto::escape::escape;
use streamlet_proto::{Event, ScaleDirection};

use super::human;

/// `HH:MM:SS.mmm  KIND             details`, the time in UTC; one line,
/// every control character in it escaped.
pub fn event_line(at_ms: u64, event: &Event) -> String {
    let (kind, details) = describe(event);
    escape(&format!("{}  {kind:<17} {details}", clock(at_ms))).into_owned()
}

fn clock(at_ms: u64) -> String {
    let ms_of_day = at_ms % 86_400_000;
    let (h, m, s, ms) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

fn describe(event: &Event) -> (&'static str, String) {
    match event {
        Event::StreamOpened(e) => {
            ("stream_opened", format!("stream {} pool={} worker={} tenant={}", e.stream, e.pool, e.worker, e.tenant))
        }
        Event::StreamEnded(e) => (
            "stream_ended",
            format!(
                // (Counts from the last report, not the end's, are a floor.)
                "stream {} pool={} worker={} reason={} in{op}{} out{op}{}",
                e.stream,
                e.pool,
                e.worker,
                e.reason,
                human::bytes(e.bytes_in),
                human::bytes(e.bytes_out),
                op = if e.bytes_exact { "=" } else { ">=" },
            ),
        ),
        Event::StreamMigrated(e) => {
            ("stream_migrated", format!("stream {} pool={} from streamlet {} to {}", e.stream, e.pool, e.from, e.to))
        }
        Event::WorkerSpawned(e) => {
            let restarts = if e.restarts > 0 { format!(" restarts={}", e.restarts) } else { String::new() };
            ("worker_spawned", format!("streamlet {} pool={} pid={}{restarts}", e.worker, e.pool, e.pid))
        }
        Event::WorkerReady(e) => (
            "worker_ready",
            format!("streamlet {} pool={} startup={}", e.worker, e.pool, human::duration_ms(e.startup_ms)),
        ),
        Event::WorkerExited(e) => {
            let respawn = match e.respawn_in_ms {
                Some(ms) => format!(" respawn_in={}", human::duration_ms(ms)),
                None => String::new(),
            };
            (
                "worker_exited",
                format!(
                    "streamlet {} pool={} cause={} uptime={} streams={}{respawn}",
                    e.worker,
                    e.pool,
                    e.cause,
                    human::duration_ms(e.uptime_ms),
                    e.streams
                ),
            )
        }
        Event::PoolDegraded(e) => (
            "pool_degraded",
            format!(
                "pool {}: {} deaths in {}; restarts paused {}",
                e.pool,
                e.deaths,
                human::duration_ms(e.period_ms),
                human::duration_ms(e.cooldown_ms)
            ),
        ),
        Event::PoolRecovered(e) => ("pool_recovered", format!("pool {}: restarts resume", e.pool)),
        Event::PoolScaled(e) => {
            let (direction, verb) = match e.direction {
                ScaleDirection::Up => ("up", "spawned"),
                ScaleDirection::Down => ("down", "retired"),
            };
            let forecast = e.forecast.map(|f| format!(", forecast {f}")).unwrap_or_default();
            let retired = if e.retired.is_empty() {
                String::new()
            } else {
                let ids: Vec<String> = e.retired.iter().map(ToString::to_string).collect();
                format!(" ({})", ids.join(", "))
            };
            (
                "pool_scaled",
                format!(
                    "pool {} {direction}: {verb} {}{retired} for {}; {} streamlets wanted{forecast}",
                    e.pool,
                    e.count,
                    e.reason.as_str(),
                    e.workers
                ),
            )
        }
        Event::Reloaded(e) => ("reloaded", summary(e)),
        Event::SubscriberDropped(e) => {
            ("dropped", format!("this connection read too slowly ({} unread) and is closed", human::bytes(e.unread)))
        }
    }
}

/// `FILE: added a, b; removed c; changed d` (or `nothing changed`), then
/// the notes; escaped as an event line is.
pub fn reload_summary(r: &streamlet_proto::Reloaded) -> String {
    escape(&summary(r)).into_owned()
}

fn summary(r: &streamlet_proto::Reloaded) -> String {
    let mut parts = Vec::new();
    for (what, pools) in [("added", &r.added), ("removed", &r.removed), ("changed", &r.changed)] {
        if !pools.is_empty() {
            parts.push(format!("{what} {}", pools.join(", ")));
        }
    }
    let mut text =
        format!("{}: {}", r.source, if parts.is_empty() { "no pool changed".to_owned() } else { parts.join("; ") });
    for note in &r.notes {
        text.push_str("; ");
        text.push_str(note);
    }
    text
}

#[cfg(test)]
mod tests {
    use streamlet_proto::{EndReason, ScaleReason, StreamEnded, StreamId, WorkerId};

    use super::*;

    #[test]
    fn a_line_has_the_time_the_kind_and_the_details() {
        let ended = Event::StreamEnded(StreamEnded {
            stream: StreamId(12),
            pool: "echo".into(),
            worker: WorkerId(2),
            reason: EndReason::Completed,
            bytes_in: 1229,
            bytes_out: 1229,
            bytes_exact: true,
        });
        assert_eq!(
            event_line(86_400_000 * 20_000 + 3_723_004, &ended),
            "01:02:03.004  stream_ended      stream 12 pool=echo worker=2 reason=completed in=1.2 KiB out=1.2 KiB"
        );
        let scaled = Event::PoolScaled(streamlet_proto::PoolScaled {
            pool: "llm".into(),
            direction: ScaleDirection::Down,
            reason: ScaleReason::IdleGrace,
            count: 2,
            workers: 6,
            forecast: Some(6),
            retired: vec![WorkerId(14), WorkerId(9)],
        });
        assert!(event_line(0, &scaled).ends_with(
            "pool_scaled       pool llm down: retired 2 (14, 9) for idle_grace; 6 streamlets wanted, forecast 6"
        ));
    }

    #[test]
    fn what_a_tenant_or_a_streamlet_wrote_stays_on_its_line_and_off_the_terminal() {
        let opened = Event::StreamOpened(streamlet_proto::StreamOpened {
            stream: StreamId(3),
            pool: "echo".into(),
            worker: WorkerId(1),
            tenant: "acme\x1b[2J\x07\r\n00:00:00.000  stream_opened      stream 9 tenant=\u{9b}".into(),
        });
        let line = event_line(0, &opened);
        assert_eq!(
            line,
            r"00:00:00.000  stream_opened     stream 3 pool=echo worker=1 tenant=acme\x1b[2J\x07\r\n00:00:00.000  stream_opened      stream 9 tenant=\u{9b}"
        );
        let ended = Event::StreamEnded(StreamEnded {
            stream: StreamId(3),
            pool: "echo".into(),
            worker: WorkerId(1),
            reason: EndReason::HandlerError { message: "bye\u{1b}]0;owned\u{7}\\".into() },
            bytes_in: 0,
            bytes_out: 0,
            bytes_exact: false,
        });
        let line = event_line(0, &ended);
        assert!(line.contains(r"reason=handler_error (bye\x1b]0;owned\x07\\)"), "{line}");
        assert!(line.ends_with("in>=0 B out>=0 B"), "counts from the last report are a floor: {line}");
        let reloaded = streamlet_proto::Reloaded {
            source: "/etc/s.toml".into(),
            added: vec!["a\rb".into()],
            notes: vec!["n\x1b".into()],
            ..Default::default()
        };
        assert_eq!(reload_summary(&reloaded), r"/etc/s.toml: added a\rb; n\x1b");
        assert_eq!(
            event_line(0, &Event::Reloaded(reloaded)),
            r"00:00:00.000  reloaded          /etc/s.toml: added a\rb; n\x1b"
        );
    }
}
