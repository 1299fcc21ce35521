//! From a trace and the options to what the engine plays: the streams of
//! the evaluation window, the history the forecast starts from, and the
//! demand minute by minute.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use streamlet_autoscale::history::MISSING;

use super::clock::{format_duration, MINUTE_MS};
use super::trace::{Arrivals, Length, Request, Trace};
use super::{Durations, Options, SimulateError};

/// One stream to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stream {
    pub at_ms: u64,
    /// From its placement to its end.
    pub duration_ms: u64,
}

/// The demand of one minute, whatever the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Demand {
    pub arrivals: u32,
    /// The most streams open at once, had each been placed on arrival.
    pub streams: u32,
}

/// A trace made ready to play: deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The trace's name, for titles.
    pub trace: String,
    /// What kind of trace it was.
    pub kind: &'static str,
    /// The evaluation window, `[start, end)`, milliseconds since 1970
    /// (trace clock), on minute boundaries.
    pub start_ms: u64,
    pub end_ms: u64,
    /// Where play starts: the warm-up before the window, whose streams are
    /// played but not counted.
    pub warm_ms: u64,
    /// Minutes of history before the warm-up (the forecast's training).
    pub training_minutes: u64,
    pub(crate) streams: Vec<Stream>,
    /// Arrivals per minute before the warm-up ([`MISSING`] where nobody
    /// counted), and the mean duration of their streams.
    pub(crate) history: Vec<u32>,
    pub(crate) mean_duration_ms: f64,
    /// Minutes played nobody counted: `[first, end)`, in minutes.
    pub(crate) gaps: Vec<(u64, u64)>,
    pub(crate) demand: Vec<Demand>,
}

/// The streams of the minutes `[warm, end)`, and what came before them.
#[derive(Debug, Default)]
struct Played {
    streams: Vec<Stream>,
    history: Vec<u32>,
    gaps: Vec<(u64, u64)>,
    /// The mean duration of the trace's streams before `warm`, if it says.
    trained_ms: Option<f64>,
}

impl Workload {
    pub fn new(trace: &Trace, options: &Options) -> Result<Workload, SimulateError> {
        if !(options.scale > 0.0 && options.scale <= 1000.0) {
            return Err(SimulateError::Scale(options.scale));
        }
        if options.durations == Durations::Trace && !trace.has_durations() {
            return Err(SimulateError::NoDurations { trace: trace.name.clone() });
        }
        let (first, end) = trace.span_minutes();
        let start = match options.evaluate_last_ms {
            None => first,
            Some(ms) if ms < MINUTE_MS => return Err(SimulateError::ShortWindow(format_duration(ms))),
            Some(ms) if ms / MINUTE_MS >= end - first => {
                return Err(SimulateError::Window {
                    trace: trace.name.clone(),
                    span: format_duration((end - first) * MINUTE_MS),
                    window: format_duration(ms),
                })
            }
            Some(ms) => end - ms / MINUTE_MS,
        };
        // The last minutes before the window are played, uncounted, so the
        // pool meets the window as it would have been.
        let warm = start - (options.warm_up_ms / MINUTE_MS).min(start - first);
        let mut played = match &trace.arrivals {
            Arrivals::PerMinute { first_minute, counts } => per_minute(*first_minute, counts, warm, options),
            Arrivals::Requests(requests) => requests_of(requests, first, warm, options),
        };
        played.streams.sort_by_key(|s| s.at_ms);
        let demand = demand(&played.streams, warm, end).split_off((start - warm) as usize);
        Ok(Workload {
            trace: trace.name.clone(),
            kind: trace.kind(),
            warm_ms: warm * MINUTE_MS,
            start_ms: start * MINUTE_MS,
            end_ms: end * MINUTE_MS,
            training_minutes: warm - first,
            streams: played.streams,
            history: played.history,
            // Streams to come last as long as the distribution says, or as
            // the trace's did before them.
            mean_duration_ms: options.durations.mean_ms().or(played.trained_ms).unwrap_or(0.0),
            gaps: played.gaps,
            demand,
        })
    }

    /// How many streams arrive in the evaluation window.
    pub fn stream_count(&self) -> usize {
        self.streams.len() - self.streams.partition_point(|s| s.at_ms < self.start_ms)
    }

    /// The demand as the forecast knows it when play starts.
    pub(crate) fn trained_demand(&self) -> streamlet_autoscale::Demand {
        let first = self.warm_ms / MINUTE_MS - self.history.len() as u64;
        streamlet_autoscale::Demand::from_series(first, &self.history, self.mean_duration_ms)
    }
}

/// Seeds of the two random streams: arrival times and copies, durations.
const TIMES: u64 = 0x5EED_0FA1;
const LENGTHS: u64 = 0xD0A7_1035;

/// Counts per minute: a minute's `n` arrivals (scaled) at uniformly random
/// instants of it.
fn per_minute(first_minute: u64, counts: &[Option<u32>], warm: u64, options: &Options) -> Played {
    let mut rng = Rng::new(options.seed ^ TIMES);
    let mut lengths = Rng::new(options.seed ^ LENGTHS);
    let mut played = Played::default();
    for (minute, count) in (first_minute..).zip(counts) {
        if minute < warm {
            played.history.push(count.map_or(MISSING, |n| scaled(n, options.scale)));
            continue;
        }
        let Some(n) = *count else {
            match played.gaps.last_mut() {
                Some((_, gap_end)) if *gap_end == minute => *gap_end += 1,
                _ => played.gaps.push((minute, minute + 1)),
            }
            continue;
        };
        let copies = (0..n).map(|_| rng.copies(options.scale)).sum::<u64>();
        let mut offsets: Vec<u64> = (0..copies).map(|_| rng.below(MINUTE_MS)).collect();
        offsets.sort_unstable();
        for offset in offsets {
            let duration_ms = draw(options.durations, &mut lengths).unwrap_or(0);
            played.streams.push(Stream { at_ms: minute * MINUTE_MS + offset, duration_ms });
        }
    }
    played
}

/// Requests: each one (scaled) as a stream; a copy arrives at a random
/// instant of the original's second.
fn requests_of(requests: &[Request], first: u64, warm: u64, options: &Options) -> Played {
    let mut rng = Rng::new(options.seed ^ TIMES);
    let mut lengths = Rng::new(options.seed ^ LENGTHS);
    let mut played = Played::default();
    let mut per_minute: Vec<u32> = vec![0; (warm - first) as usize];
    let (mut trained, mut trained_ms) = (0u64, 0.0);
    for request in requests {
        let own = match request.length {
            Length::Millis(ms) => ms,
            Length::Tokens(n) => u64::from(n).saturating_mul(options.ms_per_token),
        };
        let minute = request.at_ms / MINUTE_MS;
        if minute < warm {
            per_minute[(minute - first) as usize] += 1;
            trained += 1;
            trained_ms += own as f64;
            continue;
        }
        for copy in 0..rng.copies(options.scale) {
            let at_ms = match copy {
                0 => request.at_ms,
                _ => request.at_ms - request.at_ms % 1000 + rng.below(1000),
            };
            let duration_ms = draw(options.durations, &mut lengths).unwrap_or(own);
            played.streams.push(Stream { at_ms, duration_ms });
        }
    }
    played.history = per_minute.into_iter().map(|n| scaled(n, options.scale)).collect();
    played.trained_ms = (trained > 0).then(|| trained_ms / trained as f64);
    played
}

/// A minute's count of `n`, scaled, for the history.
fn scaled(n: u32, scale: f64) -> u32 {
    (f64::from(n) * scale).round().min(f64::from(MISSING - 1)) as u32
}

fn draw(durations: Durations, rng: &mut Rng) -> Option<u64> {
    match durations {
        Durations::Trace => None,
        Durations::Fixed(ms) => Some(ms),
        Durations::Exponential(mean) => Some(((-(1.0 - rng.unit()).ln()) * mean as f64).round().max(1.0) as u64),
    }
}

/// Arrivals and the most streams open at once, per minute of `[start, end)`
/// (in minutes), had every stream been placed on arrival.
fn demand(streams: &[Stream], start: u64, end: u64) -> Vec<Demand> {
    let mut minutes = vec![Demand::default(); (end - start) as usize];
    let mut open: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut next = streams.iter().peekable();
    for (i, minute) in minutes.iter_mut().enumerate() {
        let (from, to) = ((start + i as u64) * MINUTE_MS, (start + i as u64 + 1) * MINUTE_MS);
        while open.peek().is_some_and(|Reverse(end)| *end <= from) {
            open.pop();
        }
        let mut most = open.len();
        while let Some(s) = next.next_if(|s| s.at_ms < to) {
            while open.peek().is_some_and(|Reverse(end)| *end <= s.at_ms) {
                open.pop();
            }
            open.push(Reverse(s.at_ms + s.duration_ms));
            minute.arrivals += 1;
            most = most.max(open.len());
        }
        minute.streams = most as u32;
    }
    minutes
}

/// SplitMix64: small, fast, and the same numbers on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// How many streams one arrival becomes at `scale`.
    pub fn copies(&mut self, scale: f64) -> u64 {
        let whole = scale.floor();
        whole as u64 + u64::from(self.unit() < scale - whole)
    }
}
