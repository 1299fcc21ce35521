//! `streamletctl top`: a live view of the daemon, refreshed every second:
//! its pools, its streamlets (CPU%, memory, streams, send rate, restarts)
//! and its latest events. `q`, Esc or Ctrl-C quits.
//!
//! Without a terminal on stdout (`top > FILE`, a pipe, cron) it prints one
//! snapshot instead, as text, or as JSON with `--json` ([`snapshot`]); a
//! terminal it cannot draw on is an error that says so.
//!
//! Each cell and the title are escaped ([`escape`]) as the rows are made, and
//! the event lines come escaped from `event_line`: ratatui would drop a
//! control character silently, and the operator should see it was there.

mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use ratatui::crossterm::event::{self, Event as Key, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use streamlet_client::proto::escape::escape;
use streamlet_client::proto::units::format_rate;
use streamlet_client::proto::{Encoding, StatusReport, StreamInfo, WorkerInfo, WorkerState};
use streamlet_client::table::{event_line, human};
use streamlet_client::Client;

/// Events kept on screen.
const EVENTS: usize = 200;
const REFRESH: Duration = Duration::from_secs(1);

/// What one screen shows.
#[derive(Debug, Default)]
pub struct View {
    pub status: Option<StatusReport>,
    pub workers: Vec<WorkerInfo>,
    /// CPU% per streamlet, from its CPU time since the last refresh.
    pub cpu: HashMap<u64, f64>,
    /// Send rate per streamlet: its streams' measured rates added up.
    pub sending: HashMap<u64, u64>,
    /// Newest last.
    pub events: VecDeque<String>,
}

impl View {
    /// Takes a new sample; CPU% is the CPU time used since `previous`.
    pub fn update(
        &mut self,
        status: StatusReport,
        workers: Vec<WorkerInfo>,
        streams: &[StreamInfo],
        elapsed: Duration,
    ) {
        let before: HashMap<u64, u64> =
            self.workers.iter().filter_map(|w| Some((w.id.0, w.usage?.cpu_usage_us))).collect();
        self.cpu = workers
            .iter()
            .filter_map(|w| {
                let now = w.usage?.cpu_usage_us;
                let then = before.get(&w.id.0)?;
                let used = now.saturating_sub(*then) as f64;
                Some((w.id.0, 100.0 * used / elapsed.as_micros().max(1) as f64))
            })
            .collect();
        self.sending.clear();
        for s in streams {
            *self.sending.entry(s.worker.0).or_default() += s.sending.unwrap_or(0);
        }
        self.status = Some(status);
        self.workers = workers;
    }

    pub fn event(&mut self, line: String) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(line);
    }
}

/// Draws the view: pools on top, streamlets in the middle, events below.
pub fn render(frame: &mut Frame<'_>, view: &View) {
    let pools = view.status.as_ref().map_or(0, |s| s.pools.len()) as u16;
    let [head, pools_area, workers_area, events_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(pools + 3),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ])
    .areas(frame.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);

    let title = match &view.status {
        Some(s) => format!(
            "streamletd {}  pid {}  up {}  {}   (q quits)",
            s.version,
            s.pid,
            human::duration_ms(s.uptime_ms),
            s.socket
        ),
        None => "streamletd: connecting...".to_owned(),
    };
    frame.render_widget(Paragraph::new(Line::styled(escape(&title).into_owned(), bold)), head);

    let rows = view.status.iter().flat_map(|s| &s.pools).map(|p| {
        let forecast = p.forecast.map_or_else(|| "-".to_owned(), |f| f.to_string());
        let state = match p.degraded_for_ms {
            Some(ms) => format!("degraded {}", human::duration_ms(ms)),
            None => "ok".to_owned(),
        };
        row(vec![
            p.name.clone(),
            p.autoscale.clone(),
            format!("{}/{}", p.ready, p.desired),
            format!("{}..{}", p.min, p.max),
            forecast,
            format!("{}/{}", p.streams, p.capacity),
            state,
        ])
    });
    let pools_table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(["POOL", "AUTOSCALE", "READY", "MIN..MAX", "FORECAST", "STREAMS", "STATE"]).style(bold))
    .block(Block::bordered().title(" pools "));
    frame.render_widget(pools_table, pools_area);

    let rows = view.workers.iter().map(|w| {
        let cpu = view.cpu.get(&w.id.0).map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%"));
        let memory = w.usage.map_or_else(|| "-".to_owned(), |u| human::bytes(u.memory_current));
        let rate = format_rate(view.sending.get(&w.id.0).copied().unwrap_or(0));
        row(vec![
            w.pool.clone(),
            w.id.to_string(),
            w.pid.to_string(),
            format!("{:?}", w.state).to_lowercase(),
            cpu,
            memory,
            format!("{}/{}", w.streams, w.capacity),
            rate,
            // The slot's history; a spare has no slot yet.
            if w.state == WorkerState::Spare { "-".to_owned() } else { w.restarts.to_string() },
        ])
    });
    let workers_table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(["POOL", "ID", "PID", "STATE", "CPU", "MEMORY", "STREAMS", "SENDING", "SLOT RESTARTS"]).style(bold),
    )
    .block(Block::bordered().title(" streamlets "));
    frame.render_widget(workers_table, workers_area);

    let shown = events_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line<'_>> =
        view.events.iter().skip(view.events.len().saturating_sub(shown)).map(|l| Line::raw(l.as_str())).collect();
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" events ")), events_area);
}

/// A row of cells, each escaped.
fn row(cells: Vec<String>) -> Row<'static> {
    Row::new(cells.into_iter().map(|cell| escape(&cell).into_owned()))
}

/// Runs the live view until `q`; prints one snapshot instead with `json`,
/// or when stdout is not a terminal.
pub async fn run(client: &mut Client, socket: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        return snapshot::json(client).await;
    }
    if !std::io::stdout().is_terminal() {
        return snapshot::text(client).await;
    }
    let mut events = Client::connect_with(socket, Encoding::Postcard, "streamletctl top").await?;
    let mut view = View::default();
    for logged in events.events(Some(EVENTS as u32), true).await?.events {
        view.event(event_line(logged.at_ms, &logged.event));
    }
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(err) => {
            // (It may have got as far as raw mode.)
            ratatui::restore();
            return Err(err).context(
                "top draws on a terminal, and cannot use this one (for one snapshot, send stdout to a file or \
                 a pipe: streamletctl top | cat)",
            );
        }
    };
    let result = live(client, &mut events, &mut terminal, &mut view).await;
    ratatui::restore();
    result
}

async fn live(
    client: &mut Client,
    events: &mut Client,
    terminal: &mut ratatui::DefaultTerminal,
    view: &mut View,
) -> anyhow::Result<()> {
    let mut sampled = Instant::now() - REFRESH;
    loop {
        if sampled.elapsed() >= REFRESH {
            let elapsed = sampled.elapsed();
            sampled = Instant::now();
            let status = client.status().await?;
            let workers = client.workers(None).await?;
            let streams = client.streams(None).await?;
            view.update(status, workers, &streams, elapsed);
        }
        // Events that came meanwhile.
        while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(1), events.next_event()).await {
            let at =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            view.event(event_line(at, &event));
        }
        terminal.draw(|frame| render(frame, view))?;
        // Keys, for up to a tenth of a second. (Blocking is fine: this
        // command's runtime runs nothing else meanwhile.)
        let key = if event::poll(Duration::from_millis(100))? { Some(event::read()?) } else { None };
        if let Some(Key::Key(key)) = key {
            let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use streamlet_client::proto::{PoolStatus, ResourceUsage, StreamId, WorkerId};

    use super::*;

    fn status() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            uptime_ms: 3_600_000,
            socket: "/run/streamlet/streamletd.sock".into(),
            pools: vec![PoolStatus {
                name: "echo".into(),
                handler: "echo".into(),
                placement: "pack".into(),
                workers: 2,
                ready: 2,
                streams: 3,
                capacity: 16,
                degraded_for_ms: None,
                spares: 1,
                slots: 2,
                errors: Default::default(),
                min: 1,
                max: 8,
                desired: 2,
                forecast: Some(3),
                predicted_streams: Some(20),
                autoscale: "predictive".into(),
                listening: Vec::new(),
            }],
        }
    }

    fn worker(id: u64, cpu_us: u64) -> WorkerInfo {
        WorkerInfo {
            id: WorkerId(id),
            pool: "echo".into(),
            pid: 4000 + id as u32,
            state: WorkerState::Ready,
            streams: 2,
            capacity: 8,
            uptime_ms: 1000,
            restarts: 1,
            last_exit: None,
            usage: Some(ResourceUsage { cpu_usage_us: cpu_us, memory_current: 3 << 20, ..Default::default() }),
            labels: Default::default(),
        }
    }

    #[test]
    fn a_screen_shows_pools_streamlets_with_cpu_and_rate_and_events() {
        let mut view = View::default();
        view.update(status(), vec![worker(7, 1_000_000)], &[], Duration::from_secs(1));
        let stream = StreamInfo {
            id: StreamId(1),
            pool: "echo".into(),
            tenant: "default".into(),
            worker: WorkerId(7),
            age_ms: 10,
            bytes_in: 0,
            bytes_out: 0,
            rate: None,
            priority: 0,
            sending: Some(125_000),
            stalled_ms: 0,
        };
        // Half a second of CPU in a second: 50%.
        view.update(status(), vec![worker(7, 1_500_000)], &[stream], Duration::from_secs(1));
        view.event("12:00:00.000  worker_ready      streamlet 7 pool=echo startup=2ms".into());
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|f| render(f, &view)).unwrap();
        let screen: Vec<String> = terminal
            .backend()
            .buffer()
            .content
            .chunks(100)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
            .collect();
        let text = screen.join("\n");
        assert!(screen[0].starts_with("streamletd 0.1.0  pid 42  up 1h00m"), "{text}");
        let pool = screen.iter().find(|l| l.contains("predictive")).expect(&text);
        for cell in ["echo", "2/2", "1..8", "3", "3/16", "ok"] {
            assert!(pool.contains(cell), "{cell} in {pool}");
        }
        let row = screen.iter().find(|l| l.contains("4007")).expect(&text);
        for cell in ["ready", "50.0%", "3.0 MiB", "2/8", "1 Mbit/s"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(text.contains("worker_ready      streamlet 7"), "{text}");
    }

    #[test]
    fn what_others_wrote_shows_escaped_not_dropped() {
        let mut hostile = status();
        hostile.socket = "/run/s.sock\x1b]0;owned\x07".into();
        let mut w = worker(7, 0);
        w.pool = "echo\r\u{9b}2J".into();
        let mut view = View::default();
        view.update(hostile, vec![w], &[], Duration::from_secs(1));
        view.event(event_line(
            0,
            &streamlet_client::proto::Event::PoolRecovered(streamlet_client::proto::PoolRecovered {
                pool: "p\x1b[2J".into(),
            }),
        ));
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|f| render(f, &view)).unwrap();
        let text: String = terminal.backend().buffer().content.iter().map(|c| c.symbol()).collect();
        for shown in [r"/run/s.sock\x1b]0;owned\x07", r"echo\r\u{9b}2J", r"pool p\x1b[2J: restarts resume"] {
            assert!(text.contains(shown), "{shown} in {text}");
        }
    }
}
