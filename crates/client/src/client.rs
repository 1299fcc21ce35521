//! A connection to `streamletd`'s control socket.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use streamlet_proto::conn::{FrameReader, FrameWriter};
use streamlet_proto::frame::HEADER_LEN;
use streamlet_proto::handshake::Welcome;
use streamlet_proto::{
    CloseRequest, Closed, DrainRequest, Encoding, Event, EventLog, EventsRequest, LeaseGranted, LeaseRef, LeaseRequest,
    OpenRequest, Opened, QuotaReport, QuotaRequest, ReloadRequest, Reloaded, ReplyBody, Request, RequestBody,
    RestartAccepted, RestartRequest, ScaleAccepted, ScaleRequest, ServerMessage, StatusReport, StatusRequest, StreamId,
    StreamInfo, StreamsRequest, SubscribeRequest, WorkerDetail, WorkerId, WorkerInfo, WorkerRef, WorkersRequest,
};

use crate::error::ClientError;
use crate::handshake;

/// The name a [`Client::connect`] gives itself in the handshake.
pub const CLIENT_NAME: &str = "streamlet-client";

/// How long [`Client::request`] waits for its reply, unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to the daemon, past the handshake.
///
/// Requests get ids from 1 up. Events, and replies to requests sent with
/// [`send`](Self::send), that arrive while [`request`](Self::request) waits for
/// its reply are queued, in order, for [`recv`](Self::recv),
/// [`next_event`](Self::next_event) and [`take_events`](Self::take_events).
#[derive(Debug)]
pub struct Client {
    reader: FrameReader,
    writer: FrameWriter,
    encoding: Encoding,
    welcome: Welcome,
    next_id: u64,
    queued: VecDeque<ServerMessage>,
    /// Requests whose callers stopped waiting (a timeout): their late replies are dropped.
    abandoned: HashSet<u64>,
    request_timeout: Option<Duration>,
}

impl Client {
    /// Connects in postcard, as [`CLIENT_NAME`].
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Self::connect_with(path, Encoding::Postcard, CLIENT_NAME).await
    }

    /// Connects with the given encoding and client name (the name shows in the daemon's log).
    pub async fn connect_with(path: impl AsRef<Path>, encoding: Encoding, name: &str) -> Result<Client, ClientError> {
        let done = handshake::connect(path.as_ref(), encoding, name).await?;
        Ok(Client {
            reader: done.reader,
            writer: done.writer,
            encoding,
            welcome: done.welcome,
            next_id: 1,
            queued: VecDeque::new(),
            abandoned: HashSet::new(),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        })
    }

    /// The daemon's answer to the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// How long [`request`](Self::request) waits for a reply; `None` waits forever.
    pub fn set_request_timeout(&mut self, timeout: Option<Duration>) {
        self.request_timeout = timeout;
    }

    /// Hands the connection `fd` to a streamlet of `req.pool`. The daemon keeps
    /// its own copy of `fd`; the caller may close its copy once this returns.
    pub async fn open(&mut self, req: OpenRequest, fd: BorrowedFd<'_>) -> Result<Opened, ClientError> {
        match self.request(RequestBody::Open(req), Some(fd)).await? {
            ReplyBody::Opened(opened) => Ok(opened),
            other => Err(unexpected("an opened reply", &other)),
        }
    }

    /// Ends a stream.
    pub async fn close(&mut self, stream: StreamId) -> Result<Closed, ClientError> {
        match self.request(RequestBody::Close(CloseRequest { stream }), None).await? {
            ReplyBody::Closed(closed) => Ok(closed),
            other => Err(unexpected("a closed reply", &other)),
        }
    }

    /// The daemon and its pools.
    pub async fn status(&mut self) -> Result<StatusReport, ClientError> {
        match self.request(RequestBody::Status(StatusRequest {}), None).await? {
            ReplyBody::Status(status) => Ok(status),
            other => Err(unexpected("a status reply", &other)),
        }
    }

    /// The streamlets, of one pool or of all.
    pub async fn workers(&mut self, pool: Option<String>) -> Result<Vec<WorkerInfo>, ClientError> {
        match self.request(RequestBody::Workers(WorkersRequest { pool }), None).await? {
            ReplyBody::Workers(list) => Ok(list.workers),
            other => Err(unexpected("a workers reply", &other)),
        }
    }

    /// The open streams, of one pool or of all.
    /// Every open stream (of `pool`), by id: the daemon answers a page at a
    /// time, and this asks for each in turn.
    pub async fn streams(&mut self, pool: Option<String>) -> Result<Vec<StreamInfo>, ClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request = StreamsRequest { pool: pool.clone(), after, limit: None };
            match self.request(RequestBody::Streams(request), None).await? {
                ReplyBody::Streams(list) => {
                    all.extend(list.streams);
                    match list.next {
                        Some(next) => after = Some(next),
                        None => return Ok(all),
                    }
                }
                other => return Err(unexpected("a streams reply", &other)),
            }
        }
    }

    /// Holds bandwidth and a tenant slot without a stream; refresh it before
    /// its TTL.
    pub async fn lease(&mut self, request: LeaseRequest) -> Result<LeaseGranted, ClientError> {
        match self.request(RequestBody::Lease(request), None).await? {
            ReplyBody::Leased(granted) => Ok(granted),
            other => Err(unexpected("a leased reply", &other)),
        }
    }

    /// Extends a lease by its TTL; answers its current rate.
    pub async fn refresh(&mut self, lease: u64) -> Result<LeaseGranted, ClientError> {
        match self.request(RequestBody::Refresh(LeaseRef { lease }), None).await? {
            ReplyBody::Refreshed(granted) => Ok(granted),
            other => Err(unexpected("a refreshed reply", &other)),
        }
    }

    /// Gives a lease back.
    pub async fn release(&mut self, lease: u64) -> Result<(), ClientError> {
        match self.request(RequestBody::Release(LeaseRef { lease }), None).await? {
            ReplyBody::Released(_) => Ok(()),
            other => Err(unexpected("a released reply", &other)),
        }
    }

    /// Capacity, allocated and free bandwidth per host, pool and tenant.
    pub async fn quota(&mut self) -> Result<QuotaReport, ClientError> {
        // The daemon lists tenants a page at a time; the host and pools come
        // with each page, and are taken from the first.
        let mut report: Option<QuotaReport> = None;
        let mut after = None;
        loop {
            let request = QuotaRequest { after: after.take(), limit: None };
            let page = match self.request(RequestBody::Quota(request), None).await? {
                ReplyBody::Quota(page) => page,
                other => return Err(unexpected("a quota reply", &other)),
            };
            let next = page.next.clone();
            match &mut report {
                None => report = Some(page),
                Some(report) => report.lines.extend(page.lines.into_iter().filter(|l| l.level == "tenant")),
            }
            match next {
                Some(name) => after = Some(name),
                None => {
                    let mut report = report.expect("a first page");
                    report.next = None;
                    return Ok(report);
                }
            }
        }
    }

    /// One streamlet, its streams and its slot's last deaths.
    pub async fn worker(&mut self, worker: WorkerId) -> Result<WorkerDetail, ClientError> {
        match self.request(RequestBody::Worker(WorkerRef { worker }), None).await? {
            ReplyBody::Worker(detail) => Ok(*detail),
            other => Err(unexpected("a worker reply", &other)),
        }
    }

    /// Stops giving a streamlet new streams; it exits when its last one
    /// ends, or is killed after `timeout_ms` (`None`: the daemon's shutdown
    /// timeout).
    pub async fn drain(&mut self, worker: WorkerId, timeout_ms: Option<u64>) -> Result<(), ClientError> {
        match self.request(RequestBody::Drain(DrainRequest { worker, timeout_ms }), None).await? {
            ReplyBody::Draining(_) => Ok(()),
            other => Err(unexpected("a draining reply", &other)),
        }
    }

    /// Kills a streamlet now; it is replaced at once.
    pub async fn kill(&mut self, worker: WorkerId) -> Result<(), ClientError> {
        match self.request(RequestBody::Kill(WorkerRef { worker }), None).await? {
            ReplyBody::Killed(_) => Ok(()),
            other => Err(unexpected("a killed reply", &other)),
        }
    }

    /// Replaces a pool's streamlets one at a time; answers which, in order.
    pub async fn restart(&mut self, pool: String) -> Result<RestartAccepted, ClientError> {
        match self.request(RequestBody::Restart(RestartRequest { pool }), None).await? {
            ReplyBody::Restarting(accepted) => Ok(accepted),
            other => Err(unexpected("a restarting reply", &other)),
        }
    }

    /// Asks for the daemon's lifecycle events on this connection; read them
    /// with [`next_event`](Self::next_event).
    pub async fn subscribe(&mut self) -> Result<(), ClientError> {
        match self.request(RequestBody::Subscribe(SubscribeRequest {}), None).await? {
            ReplyBody::Subscribed(_) => Ok(()),
            other => Err(unexpected("a subscribed reply", &other)),
        }
    }

    /// Sets a pool's `workers.min` and/or `workers.max` until the next reload.
    pub async fn scale(
        &mut self,
        pool: &str,
        min: Option<u32>,
        max: Option<u32>,
    ) -> Result<ScaleAccepted, ClientError> {
        let request = ScaleRequest { pool: pool.to_owned(), min, max };
        match self.request(RequestBody::Scale(request), None).await? {
            ReplyBody::Scaled(accepted) => Ok(accepted),
            other => Err(unexpected("a scaled reply", &other)),
        }
    }

    /// Asks the daemon to read its configuration file again and apply it.
    pub async fn reload(&mut self) -> Result<Reloaded, ClientError> {
        match self.request(RequestBody::Reload(ReloadRequest {}), None).await? {
            ReplyBody::Reloaded(summary) => Ok(summary),
            other => Err(unexpected("a reloaded reply", &other)),
        }
    }

    /// The daemon's last `recent` lifecycle events (all it keeps: `None`),
    /// oldest first; with `follow`, every later one arrives on this
    /// connection ([`next_event`](Self::next_event)), none lost or repeated.
    pub async fn events(&mut self, recent: Option<u32>, follow: bool) -> Result<EventLog, ClientError> {
        match self.request(RequestBody::Events(EventsRequest { recent, follow }), None).await? {
            ReplyBody::Events(log) => Ok(log),
            other => Err(unexpected("an events reply", &other)),
        }
    }

    /// Sends a request and waits for the reply with its id; events that arrive
    /// meanwhile are queued. An error reply is [`ClientError::Server`], and so is
    /// an error reply with id 0 (the daemon could not decode a frame).
    ///
    /// Not cancel-safe: cancelled, it may leave half a frame written. Give up
    /// on a reply with [`set_request_timeout`](Self::set_request_timeout) instead.
    pub async fn request(&mut self, body: RequestBody, fd: Option<BorrowedFd<'_>>) -> Result<ReplyBody, ClientError> {
        let id = self.send(body, fd).await?;
        let reply = match self.request_timeout {
            None => self.wait_for(id).await?,
            Some(limit) => match tokio::time::timeout(limit, self.wait_for(id)).await {
                Ok(reply) => reply?,
                Err(_) => {
                    self.abandoned.insert(id);
                    return Err(ClientError::Timeout);
                }
            },
        };
        match reply {
            ReplyBody::Error(body) => Err(ClientError::Server(body)),
            body => Ok(body),
        }
    }

    /// Sends a request without waiting for its reply (pipelining): the reply
    /// comes out of [`recv`](Self::recv) with the id returned here.
    pub async fn send(&mut self, body: RequestBody, fd: Option<BorrowedFd<'_>>) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = self.encoding.encode_frame(&Request { id, body })?;
        let len = frame.len() - HEADER_LEN;
        if len > self.welcome.max_request as usize {
            return Err(ClientError::RequestTooLarge { len, max: self.welcome.max_request });
        }
        let written = match fd {
            Some(fd) => match self.writer.write_frame_with_fd(&frame, fd).await {
                // The daemon's socket takes no descriptor from this peer (its
                // role cannot open streams): nothing was sent. The request
                // goes without it, and the daemon says why it is refused.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => self.writer.write_frame(&frame).await,
                other => other,
            },
            None => self.writer.write_frame(&frame).await,
        };
        written.map_err(write_error)?;
        Ok(id)
    }

    /// The next message from the daemon, queued ones first.
    ///
    /// Cancel-safe: a message is never lost to a cancelled call.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        if let Some(message) = self.queued.pop_front() {
            return Ok(message);
        }
        loop {
            match self.read_message().await? {
                ServerMessage::Reply(reply) if self.abandoned.remove(&reply.id) => {
                    tracing::debug!(id = reply.id, reply = reply.body.name(), "dropping a reply that came too late");
                }
                message => return Ok(message),
            }
        }
    }

    /// The next event, queued ones first. Skips nothing: a reply that comes
    /// out here has nobody waiting for it, and is [`ClientError::Unexpected`].
    ///
    /// Cancel-safe, like [`recv`](Self::recv).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        match self.recv().await? {
            ServerMessage::Event(event) => Ok(event),
            ServerMessage::Reply(reply) => Err(ClientError::Unexpected {
                expected: "an event",
                received: format!("a {} reply to request {}", reply.body.name(), reply.id),
            }),
        }
    }

    /// The queued events, oldest first; queued replies stay queued.
    pub fn take_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut replies = VecDeque::new();
        for message in self.queued.drain(..) {
            match message {
                ServerMessage::Event(event) => events.push(event),
                reply @ ServerMessage::Reply(_) => replies.push_back(reply),
            }
        }
        self.queued = replies;
        events
    }

    async fn wait_for(&mut self, id: u64) -> Result<ReplyBody, ClientError> {
        loop {
            match self.read_message().await? {
                ServerMessage::Reply(reply) if reply.id == id => return Ok(reply.body),
                ServerMessage::Reply(reply) if reply.id == 0 && matches!(reply.body, ReplyBody::Error(_)) => {
                    return Ok(reply.body)
                }
                ServerMessage::Reply(reply) if self.abandoned.remove(&reply.id) => {
                    tracing::debug!(id = reply.id, reply = reply.body.name(), "dropping a reply that came too late");
                }
                message => self.queued.push_back(message),
            }
        }
    }

    /// Reads and decodes one message. Cancel-safe: only the frame read awaits.
    async fn read_message(&mut self) -> Result<ServerMessage, ClientError> {
        let frame = self.reader.read_frame().await?.ok_or(ClientError::Closed)?;
        Ok(self.encoding.decode(&frame)?)
    }
}

fn unexpected(expected: &'static str, body: &ReplyBody) -> ClientError {
    ClientError::Unexpected { expected, received: format!("a {} reply", body.name()) }
}

/// A write to a socket the daemon closed is [`ClientError::Closed`].
fn write_error(err: io::Error) -> ClientError {
    match err.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ClientError::Closed,
        _ => ClientError::Io(err),
    }
}
