//! Streams begin: an open is checked against the daemon's state, handed to a
//! streamlet through the one hand-over ([`super::handover`]) with its
//! admission and upstream as the gate, and entered in the stream table; or
//! it waits, with its connection, until there is room or its time is up.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use streamlet_balance::quota::{Admission, Rate, Refusal};
use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::{sock, ErrorBody, ErrorCode, Event, Opened, ReplyBody, StreamId, WorkerState};
use tokio::sync::oneshot;

use super::bandwidth::{limit, refusal_error, Ask, Bandwidth};
use super::coordinator::Core;
use super::handover::{hand_over, Gate, HandOverError, Handing, Passage};
use super::streams::{StreamEntry, StreamFd};
use super::waiting::{answer, Waiter};
use crate::config::PoolConfig;
use crate::events::EventSink;
use crate::upstream::Upstream;
use crate::validate::Open;

/// How long an open waits, at least, for a Unix upstream whose backlog is
/// full to take a connection, before it is refused as `upstream_unavailable`.
pub const UPSTREAM_WAIT: Duration = Duration::from_secs(1);

/// What became of an open.
#[derive(Debug)]
pub enum OpenOutcome {
    Done(Result<Opened, ErrorBody>),
    /// It waits for room; the reply goes into the connection's queue, and
    /// this resolves when it is there.
    Waiting(oneshot::Receiver<()>),
}

/// An open that could not go now but may wait: its connection, and what it
/// waits for.
#[derive(Debug)]
struct Retry {
    fd: ForeignFd,
    /// Its relay upstream's backlog was full (else: no room).
    upstream: bool,
}

/// Why an open's gate refused.
#[derive(Debug)]
enum Closed {
    Quota(Refusal),
    /// Its upstream takes no connection now (`busy`: its backlog is full,
    /// worth waiting for), or refused it.
    Upstream {
        busy: bool,
        message: String,
    },
}

/// A new stream's gate: admitted into the quota once a place is held (so a
/// refusal preempts nothing), then its relay upstream connected (never a
/// connect, nor its cost to the upstream, for an open refused).
struct OpenGate<'a> {
    bandwidth: &'a mut Bandwidth,
    stream: StreamId,
    pool: &'a str,
    tenant: &'a str,
    priority: u8,
    ask: Ask,
    admission: Option<Admission>,
    target: Option<Upstream>,
    upstream: Option<OwnedFd>,
}

impl Gate for OpenGate<'_> {
    type Refused = Closed;

    fn pass(&mut self) -> Result<Passage<'_>, Closed> {
        if self.ask.managed && self.admission.is_none() {
            let admitted = self.bandwidth.admit(self.stream, self.pool, self.tenant, self.priority, self.ask.rate);
            self.admission = Some(admitted.map_err(Closed::Quota)?);
        }
        if let (Some(target), None) = (&self.target, &self.upstream) {
            match target.try_connect() {
                Ok(Some(fd)) => self.upstream = Some(fd),
                Ok(None) => {
                    let message = format!("the upstream {target} takes no connection now (its backlog is full)");
                    return Err(Closed::Upstream { busy: true, message });
                }
                Err(e) => {
                    let message = format!("cannot connect to the upstream {target}: {e}");
                    return Err(Closed::Upstream { busy: false, message });
                }
            }
        }
        Ok(Passage {
            rate: self.admission.as_ref().and_then(|a| limit(a.rate)),
            upstream: self.upstream.as_ref().map(|fd| fd.as_fd()),
        })
    }
}

impl Core {
    /// Places a new stream and hands its connection to the chosen streamlet.
    ///
    /// When no streamlet has room or the minimum rate does not fit, and the
    /// request asks to wait, it waits (with its connection) until
    /// [`retry_waiting`](Self::retry_waiting) can place it or its time is up;
    /// the reply then goes straight into the connection's queue.
    ///
    /// The request was checked ([`crate::validate`]); what is left
    /// to refuse depends on the daemon's state.
    pub(crate) fn open(
        &mut self,
        request: &Open,
        fd: ForeignFd,
        owner: Option<EventSink>,
        reply_id: u64,
    ) -> OpenOutcome {
        let wait = request.wait;
        let mut retry = None;
        let pool = request.pool.as_str();
        let began = Instant::now();
        let result = self.open_now(request, fd, owner.clone(), &mut retry);
        if self.fleet.pools.contains_key(pool) {
            let outcome = match &result {
                Ok(_) => "opened",
                Err(e) => e.code.as_str(),
            };
            self.metrics.opened(pool, outcome, began.elapsed());
        }
        if result.is_ok() || retry.as_ref().is_some_and(|r| !r.upstream) {
            self.record_arrival(pool);
        }
        if self.after_open(pool, &result) {
            self.autoscale(pool);
        }
        // An open waits if it asked to, or for a busy upstream (for as long
        // as it asked, or UPSTREAM_WAIT if longer).
        let wait = match &retry {
            Some(Retry { upstream: true, .. }) => Some(wait.map_or(UPSTREAM_WAIT, |w| w.max(UPSTREAM_WAIT))),
            Some(_) => wait,
            None => None,
        };
        match result {
            Ok(opened) => OpenOutcome::Done(Ok(opened)),
            Err(error) => match (retry, owner, wait) {
                (Some(Retry { fd, upstream }), Some(owner), Some(wait)) => {
                    let (done, waiting) = oneshot::channel();
                    // (At most ten minutes: the request's check.)
                    let deadline = Instant::now() + wait;
                    self.waiting.push(Waiter {
                        request: request.clone(),
                        fd,
                        owner,
                        id: reply_id,
                        deadline,
                        last: error,
                        upstream,
                        done,
                    });
                    OpenOutcome::Waiting(waiting)
                }
                _ => OpenOutcome::Done(Err(error)),
            },
        }
    }

    /// Tries the waiting opens again, in arrival order: after a stream or a
    /// lease ended, or a streamlet became ready.
    pub fn retry_waiting(&mut self) {
        if self.waiting.is_empty() || self.shutting_down {
            return;
        }
        let queue = self.waiting.take_all();
        let mut ask: Vec<String> = Vec::new();
        for Waiter { request, fd, owner, id, deadline, last: _, upstream: _, done } in queue {
            let mut retry = None;
            let result = self.open_now(&request, fd, Some(owner.clone()), &mut retry);
            if self.after_open(&request.pool, &result) && !ask.contains(&request.pool) {
                ask.push(request.pool.clone());
            }
            match result {
                Ok(opened) => answer(&owner, id, done, ReplyBody::Opened(opened)),
                Err(error) => match retry {
                    Some(Retry { fd, upstream }) => {
                        self.waiting.push(Waiter { request, fd, owner, id, deadline, last: error, upstream, done })
                    }
                    None => answer(&owner, id, done, ReplyBody::Error(error)),
                },
            }
        }
        for pool in ask {
            self.autoscale(&pool);
        }
    }

    /// Tries again the waiting opens whose upstream was busy (nothing tells
    /// the daemon when an upstream accepts: the tick asks), then answers
    /// those whose time is up.
    pub fn tick_waiting(&mut self) {
        if self.waiting.any_for_upstream() {
            self.retry_waiting();
        }
        self.expire_waiting();
    }

    /// Answers the waiting opens whose time is up with the error that made
    /// them wait.
    pub fn expire_waiting(&mut self) {
        self.waiting.expire(Instant::now());
    }

    /// One attempt at an open: checked against the daemon's state, handed
    /// over, and entered in the table. A refusal worth waiting out leaves
    /// the connection in `retry`.
    fn open_now(
        &mut self,
        request: &Open,
        fd: ForeignFd,
        owner: Option<EventSink>,
        retry: &mut Option<Retry>,
    ) -> Result<Opened, ErrorBody> {
        let pool = self.admissible(request)?;
        let target = relay_upstream(&pool, &request.labels)?.cloned();
        let stream = self.streams.next_id();
        let ask = self.bandwidth.ask(&pool, request.rate.map(|r| Rate { min: r.min, max: r.max }));
        let ingress = (pool.ingress_limit && ask.rate.max < super::bandwidth::UNLIMITED).then_some(ask.rate.max);
        let handing = Handing {
            pool: &request.pool,
            stream,
            tenant: &request.tenant,
            labels: &request.labels,
            region: request.region.clone(),
            ingress,
            fd: fd.as_fd(),
        };
        let mut gate = OpenGate {
            bandwidth: &mut self.bandwidth,
            stream,
            pool: &request.pool,
            tenant: &request.tenant,
            priority: request.priority,
            ask,
            admission: None,
            target,
            upstream: None,
        };
        let handed = hand_over(&mut self.fleet, &handing, &mut gate, "handing a stream over");
        let admission = gate.admission.take();
        let worker = match handed {
            Ok(worker) => worker,
            Err(error) => return Err(self.not_opened(request, stream, admission, error, fd, retry)),
        };
        let rate = admission.as_ref().and_then(|a| limit(a.rate));
        let mut entry = StreamEntry::new(request.pool.clone(), request.tenant.clone(), worker, StreamFd(fd));
        entry.owner = owner;
        entry.rate = rate;
        entry.priority = request.priority;
        entry.managed = ask.managed;
        entry.kernel_paced = sock::kernel_paces(entry.fd.0.as_fd());
        entry.labels = request.labels.clone();
        entry.ingress = ingress;
        entry.region = request.region.clone();
        self.enter(stream, entry, admission);
        Ok(Opened { stream, pool: request.pool.clone(), worker, rate })
    }

    /// What may be opened in `request`'s pool now: refused while shutting
    /// down, for a tenant at its limit, or for a pool not configured.
    fn admissible(&self, request: &Open) -> Result<std::sync::Arc<PoolConfig>, ErrorBody> {
        if self.shutting_down {
            return Err(ErrorBody::new(
                ErrorCode::ShuttingDown,
                "streamletd is shutting down and takes no new streams",
            ));
        }
        let Some(pool) = self.pool_config(&request.pool) else {
            let known: Vec<&str> =
                self.fleet.pools.iter().filter(|(_, p)| !p.removed).map(|(n, _)| n.as_str()).collect();
            return Err(ErrorBody::new(
                ErrorCode::UnknownPool,
                format!("pool {:?} is not configured; configured pools: {}", request.pool, known.join(", ")),
            ));
        };
        self.bandwidth
            .tenants
            .check(&request.tenant)
            .map_err(|full| ErrorBody::new(ErrorCode::TenantLimit, full.to_string()))?;
        Ok(pool)
    }

    /// A stream handed over: its tenant's count, its pacing, its row, its
    /// event; then what its admission preempted ends and what it lowered is
    /// lowered.
    fn enter(&mut self, stream: StreamId, entry: StreamEntry, admission: Option<Admission>) {
        self.bandwidth.tenants.take(&entry.tenant);
        if let (Some(rate), true) = (entry.rate, entry.kernel_paced) {
            entry.fd.pace(Some(rate));
        }
        let opened = streamlet_proto::StreamOpened {
            stream,
            pool: entry.pool.clone(),
            worker: entry.worker,
            tenant: entry.tenant.clone(),
        };
        let owner = entry.owner.clone();
        self.streams.insert(stream, entry);
        self.publish_except(Event::StreamOpened(opened), owner.as_ref());
        if let Some(admission) = admission {
            self.apply_changes(&admission.changes);
        }
    }

    /// A hand-over that failed: what it held is given back, what its
    /// admission preempted stays preempted (those streams and leases left
    /// the quota already), and a refusal worth waiting out keeps the
    /// connection in `retry`.
    fn not_opened(
        &mut self,
        request: &Open,
        stream: StreamId,
        admission: Option<Admission>,
        error: HandOverError<Closed>,
        fd: ForeignFd,
        retry: &mut Option<Retry>,
    ) -> ErrorBody {
        let admitted = admission.is_some();
        if let Some(admission) = admission {
            self.bandwidth.release(stream);
            // (Those it lowered are lowered, as the quota counts them; the
            // next sweep raises them again.)
            self.apply_changes(&admission.changes);
        }
        match error {
            HandOverError::NoRoom => {
                // (Only after a broken streamlet was skipped can an
                // admission be held here: then it does not wait.)
                if !admitted {
                    *retry = Some(Retry { fd, upstream: false });
                }
                self.no_room(request)
            }
            HandOverError::Refused(Closed::Quota(refusal)) => {
                if matches!(refusal, Refusal::Insufficient { .. }) {
                    *retry = Some(Retry { fd, upstream: false });
                }
                refusal_error(&refusal)
            }
            HandOverError::Refused(Closed::Upstream { busy, message }) => {
                if busy {
                    *retry = Some(Retry { fd, upstream: true });
                }
                ErrorBody::new(ErrorCode::UpstreamUnavailable, message)
            }
            HandOverError::Unsent(error) => error,
        }
    }

    /// `no_capacity`, saying why.
    fn no_room(&self, request: &Open) -> ErrorBody {
        let pool = &request.pool;
        let ready = self.fleet.workers_of(pool).filter(|(_, w)| w.state == WorkerState::Ready).count();
        let config = self.fleet.pools.get(pool).map(|p| p.config.clone());
        let message = match (ready, config) {
            (0, _) | (_, None) => format!("no streamlet of pool {pool:?} is ready yet"),
            (n, Some(c)) if c.tenant_isolation => format!(
                "none of the {n} streamlets of pool {pool:?} has room for tenant {:?}: each serves one tenant at a time (tenant_isolation)",
                request.tenant
            ),
            (n, Some(c)) => format!("all {n} streamlets of pool {pool:?} are full ({} streams each)", c.streams_per_worker),
        };
        ErrorBody::new(ErrorCode::NoCapacity, message)
    }

    /// Whether an open may have changed what the pool's scaler wants.
    fn after_open(&self, pool: &str, result: &Result<Opened, ErrorBody>) -> bool {
        match result {
            Ok(opened) => {
                let streams = self.fleet.workers.get(&opened.worker).map_or(0, |w| w.streams.len());
                self.worth_asking(pool, streams)
            }
            Err(e) => e.code == ErrorCode::NoCapacity,
        }
    }
}

/// The upstream a `relay` stream goes to: the pool's, or the one its
/// `upstream` label names, which must be in the pool's `upstream_allow`.
fn relay_upstream<'a>(
    config: &'a PoolConfig,
    labels: &BTreeMap<String, String>,
) -> Result<Option<&'a Upstream>, ErrorBody> {
    let Some(default) = &config.upstream else { return Ok(None) };
    let Some(asked) = labels.get("upstream") else { return Ok(Some(default)) };
    let allowed = std::iter::once(default).chain(&config.upstream_allow);
    for upstream in allowed {
        if upstream.to_string() == *asked {
            return Ok(Some(upstream));
        }
    }
    let allowed: Vec<String> =
        std::iter::once(default).chain(&config.upstream_allow).map(ToString::to_string).collect();
    Err(ErrorBody::new(
        ErrorCode::BadRequest,
        format!("upstream {asked:?} is not allowed for pool {:?}; allowed: {}", config.name, allowed.join(", ")),
    ))
}
