//! One authenticated connection to a peer, many calls in flight on it: dialing or accepting
//! it (transport, then handshake), writing its frames, and reading them for an [`Inbound`]
//! that knows what they mean. Which connection to a peer is kept, and when to dial, is
//! `Peers`' business.
//!
//! A sender encodes its frame straight into the connection's queue buffer, length first and
//! sealed, in order, with a ticket (its place in the queue): no buffer of its own per frame.
//! Whoever holds the write half (the sender itself when nobody is writing, else the
//! connection's writer task) takes the whole buffer at once (swapping it for its own empty
//! one) and writes it with as few system calls as the socket allows: pipelined calls share
//! them. A sender writes only until its own frame is out and leaves what was queued since to
//! the writer task, so its call is not held up by the frames of others. The count of frames
//! the kernel took whole tells, once the connection has ended, whether a given frame could
//! have reached the peer ([`Fate`]); over TLS, a failed write counts every frame it was
//! handed as taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use switchyard_messaging::{Message, NodeId};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::frame::{Body, Frame, Header};
use crate::handshake::{Authenticated, HandshakeError, Identity, handshake};
use crate::seal::{Role, Sealer, TAG_LEN};
use crate::sync::lock;
use crate::transport::{
    ConnectError, Incoming, Network, Stream, Transport, framed, reader, writes_are_exact,
};

/// How many encoded frames may wait for a connection's socket.
const OUTBOX: usize = 4_096;

/// How long a connection closed on purpose (this node leaving, or a duplicate connection
/// dropped) may take to write what was queued before: replies of calls that just ended.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// What a connection's reader hands the frames it reads to: the connection knows nothing of
/// what they mean.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// Acts on a frame read from `from`: its header, and its body (the message it carries,
    /// still encoded: see [`Connection::decode_body`]). A call comes back as the future that serves it: the
    /// connection's serving task gives it its first turn at once, in the order the frames
    /// came, then drives it with the others until its reply is sent, and the connection
    /// counts it as a call under way meanwhile. What must follow the calls read before it (a
    /// cancel) comes back as a future too.
    fn frame(&self, from: &Connection, header: Header, body: Body) -> Option<Serving>;

    /// The reader of `connection` has ended: no frame comes from it any more.
    fn ended(&self, connection: &Connection);
}

/// Serves a call: the serving task of its connection polls it until the reply is sent.
pub(crate) type Serving = BoxFuture<'static, ()>;

/// A live, authenticated connection to a peer. Cloning it is one reference count.
#[derive(Clone)]
pub(crate) struct Connection(Arc<Shared>);

impl std::ops::Deref for Connection {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the senders, the writer task and the reader task of one connection share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) peer: NodeId,
    /// Who dialed: the connection dialed by the smaller node id wins a tie.
    pub(crate) dialer: NodeId,
    queue: std::sync::Mutex<Queue>,
    /// Room in the queue: a sender waits for a permit, the writer returns them.
    room: Semaphore,
    /// Wakes the writer task: frames were queued while someone else was writing.
    wake: Notify,
    out: tokio::sync::Mutex<Outgoing>,
    /// The connection is ending: locally (`close`), or because it broke.
    closed: CancellationToken,
    /// Set just before `closed` is cancelled, for [`Connection::is_closed`].
    closing: AtomicBool,
    /// It ended because the peer went away, a read or write failed, or the peer broke the
    /// protocol; not because this node closed it.
    broken: AtomicBool,
    /// It was closed because this node is leaving the cluster: no answer can come to a call
    /// sent on it, over this connection (its reader stops) or another (none is made).
    abandoned: AtomicBool,
    /// The writer has stopped and the queue is shut: [`Shared::sent`] is final.
    finished: CancellationToken,
    /// Calls under way on this connection: sent and waiting for their reply here, or received
    /// and being served. With more than one, a writer waits a moment for other frames.
    outstanding: AtomicUsize,
    /// How many frames the kernel took whole: those may have reached the peer. A frame of
    /// which only a part was written never did (the peer cannot read it).
    sent: AtomicU64,
    /// The largest frame this node sends: the largest the peer accepts, as it said in the
    /// handshake (its `max_frame_len`, which may differ from this node's).
    peer_max_frame_len: usize,
    /// When the handshake ended.
    pub(crate) established: tokio::time::Instant,
}

/// The frames waiting for the writer, already framed and sealed: a sender encodes its frame
/// straight into `sealed` (no buffer of its own per frame), in the order of the tickets, which
/// is the order of the sequence numbers the peer checks.
struct Queue {
    sealed: Vec<u8>,
    /// Where each frame in `sealed` ends, counted in bytes from the start of the connection.
    ends: Vec<u64>,
    /// Bytes ever queued, from the start of the connection (the handshake's own included).
    bytes: u64,
    sealer: Sealer,
    /// How many frames were ever queued: the next ticket.
    queued: u64,
    /// No more frames are taken: the connection has ended.
    shut: bool,
    /// Someone is writing (or about to): frames queued now go out with that write.
    writing: bool,
}

impl Queue {
    /// Appends `frame`, length first and sealed, unless its payload is longer than `max` (the
    /// peer's limit) or it cannot be encoded: then the queue is left as it was.
    fn push(&mut self, frame: &Frame, max: usize) -> Result<(), SendError> {
        let start = self.sealed.len();
        self.sealed.extend_from_slice(&[0; 4]);
        let encoded = frame.encode_into(&mut self.sealed);
        let len = self.sealed.len() - start - 4;
        let refused = match encoded {
            Err(error) => Some(SendError::Encode(error.to_string())),
            Ok(()) if len > max => Some(SendError::TooLong { len, max }),
            Ok(()) => None,
        };
        if let Some(refused) = refused {
            self.sealed.truncate(start);
            return Err(refused);
        }
        // `max` is below `u32::MAX` less the tag (see `start`).
        let prefix = u32::try_from(len + TAG_LEN).unwrap_or(u32::MAX);
        self.sealed[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
        self.sealer.seal_in_place(&mut self.sealed, start + 4);
        self.bytes += (self.sealed.len() - start) as u64;
        self.ends.push(self.bytes);
        Ok(())
    }
}

/// The write half, and the sealed frames taken from the queue that wait for the socket.
struct Outgoing {
    io: Option<WriteHalf<Stream>>,
    /// Bytes taken from the queue, not yet written. Swapped with the queue's buffer when empty,
    /// so both keep their allocations.
    buf: Vec<u8>,
    /// Where each frame in `buf` ends, counted in bytes from the start of the connection.
    ends: std::collections::VecDeque<u64>,
    /// Bytes the kernel took since the start.
    written: u64,
    /// A failed write wrote nothing of what it was handed (see [`writes_are_exact`]).
    exact_writes: bool,
}

impl Outgoing {
    /// Takes everything queued into the buffer, without waiting: what is taken is in the
    /// buffer even if the caller stops waiting right after. When there is nothing left to
    /// write, gives up the writer's role instead and says so.
    fn take_queued(&mut self, shared: &Shared) -> bool {
        let taken = {
            let mut queue = lock(&shared.queue);
            if queue.sealed.is_empty() && self.buf.is_empty() {
                queue.writing = false;
                return false;
            }
            if self.buf.is_empty() {
                std::mem::swap(&mut queue.sealed, &mut self.buf);
            } else {
                self.buf.extend_from_slice(&queue.sealed);
                queue.sealed.clear();
            }
            let taken = queue.ends.len();
            self.ends.extend(queue.ends.drain(..));
            taken
        };
        if taken > 0 {
            shared.room.add_permits(taken);
        }
        true
    }

    /// Gives up the writer's role once a sender's own frame is written: when nothing else
    /// waits, nobody writes until the next sender; else the writer task writes the rest,
    /// keeping the role meanwhile (so senders queue behind it without writing).
    fn hand_off(&mut self, shared: &Shared) {
        let mut queue = lock(&shared.queue);
        if queue.sealed.is_empty() && self.buf.is_empty() {
            queue.writing = false;
        } else {
            drop(queue);
            shared.wake.notify_one();
        }
    }

    /// Counts the bytes the kernel took, and the frames now wholly written.
    fn wrote(&mut self, bytes: usize, shared: &Shared) {
        self.buf.drain(..bytes);
        self.written += bytes as u64;
        let mut whole = 0;
        while self.ends.front().is_some_and(|end| *end <= self.written) {
            self.ends.pop_front();
            whole += 1;
        }
        if whole > 0 {
            shared.sent.fetch_add(whole, Ordering::SeqCst);
        }
    }

    /// Writes everything queued, and what is queued meanwhile, then flushes and gives up the
    /// writer's role. A sender writing (`until` its own frame's ticket) stops once its frame
    /// is written: what was queued since goes to the writer task, so no sender is held up
    /// writing the frames of others under sustained load. Stopping it between two writes
    /// loses nothing: the rest stays in the buffer for the next writer.
    async fn write_queued(
        &mut self,
        shared: &Shared,
        until: Option<Ticket>,
    ) -> std::io::Result<()> {
        while self.take_queued(shared) {
            while !self.buf.is_empty() {
                let io = self.io.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
                let written = match io.write(&self.buf).await {
                    Ok(written) => written,
                    Err(error) => {
                        if !self.exact_writes {
                            // Any of it may have gone out before the error: every frame
                            // handed to this write counts as possibly received.
                            self.wrote(self.buf.len(), shared);
                        }
                        return Err(error);
                    }
                };
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.wrote(written, shared);
            }
            if until.is_some_and(|own| shared.sent.load(Ordering::SeqCst) > own.0) {
                self.hand_off(shared);
                break;
            }
        }
        match self.io.as_mut() {
            Some(io) => io.flush().await,
            None => Ok(()),
        }
    }
}

/// Tells the writer task to finish a write its sender stopped waiting for.
struct WakeWriterUnlessDone<'a> {
    wake: &'a Notify,
    done: bool,
}

impl Drop for WakeWriterUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("dialer", &self.dialer)
            .finish_non_exhaustive()
    }
}

/// The connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("the connection to {0} is closed")]
pub(crate) struct Closed(pub(crate) NodeId);

/// A frame's place in its connection's queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(u64);

impl Ticket {
    /// The ticket of the frame queued `queued` frames after the first.
    #[cfg(test)]
    pub(crate) fn at(queued: u64) -> Self {
        Self(queued)
    }
}

/// What became of a frame on a connection that ended before its answer came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It never left this node: the peer cannot have acted on it.
    NeverSent,
    /// The kernel took all of it before the connection broke: the peer may have acted on it.
    MaybeReceived,
}

impl Connection {
    /// Queues a frame for the peer; fails when the connection has closed or the frame is too
    /// long. The ticket tells later, if the connection is lost, whether the frame left.
    pub(crate) async fn send(&self, frame: &Frame) -> Result<Ticket, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed(Closed(self.peer.clone())));
        }
        self.enqueue(frame).await
    }

    /// Encodes and seals `frame` at the end of the queue, once there is room for it.
    async fn enqueue(&self, frame: &Frame) -> Result<Ticket, SendError> {
        let shared = &*self.0;
        let closed = || SendError::Closed(Closed(self.peer.clone()));
        let permit = tokio::select! {
            biased;
            permit = shared.room.acquire() => permit.map_err(|_| closed())?,
            () = shared.closed.cancelled() => return Err(closed()),
        };
        let (ticket, writer) = {
            let mut queue = lock(&shared.queue);
            if queue.shut {
                return Err(closed());
            }
            queue.push(frame, self.peer_max_frame_len)?;
            // The writer gives the permit back when it takes the frame.
            permit.forget();
            let ticket = queue.queued;
            queue.queued += 1;
            let writer = !queue.writing;
            queue.writing = true;
            (Ticket(ticket), writer)
        };
        if !writer {
            // Someone is writing: the frame goes out with that write or the next.
            return Ok(ticket);
        }
        // Nobody was writing: this task writes, sparing the hand-off to the writer task (a
        // wake-up on each side of a round trip). If it stops waiting, the writer task takes
        // over.
        let mut wake = WakeWriterUnlessDone {
            wake: &shared.wake,
            done: false,
        };
        if self.is_closed() {
            // Ending: the writer task finishes or drops what is queued.
            return Ok(ticket);
        }
        // Calls pipelined on this connection: let the tasks ready on this thread queue their
        // frames first, so they go out in the same write (one system call for many frames).
        // A lone call is written at once: yielding would cost it a turn of the scheduler.
        if shared.outstanding.load(Ordering::Relaxed) > 1 {
            tokio::task::yield_now().await;
        }
        let mut out = shared.out.lock().await;
        let written = tokio::select! {
            biased;
            () = shared.closed.cancelled() => Ok(()),
            written = out.write_queued(shared, Some(ticket)) => written,
        };
        wake.done = true;
        if written.is_err() {
            self.break_off();
        }
        Ok(ticket)
    }

    /// The message of a frame's `body`, read from this connection. A body that does not
    /// decode ends the connection, as a malformed frame does (logged): `None`.
    pub(crate) fn decode_body(&self, body: &Body) -> Option<Message> {
        match body.decode() {
            Ok(message) => Some(message),
            Err(error) => {
                tracing::warn!(peer = %self.peer, %error, "closing a connection after a frame whose message is malformed");
                self.break_off();
                None
            }
        }
    }

    /// Counts a call under way on this connection until the guard drops.
    pub(crate) fn outstanding(&self) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(self.clone())
    }

    /// Closes the connection on purpose: what was queued is still written (within
    /// [`FINAL_FLUSH_LIMIT`]).
    pub(crate) fn close(&self) {
        self.end();
    }

    /// Marks the connection closed, then wakes whoever waits for it to close.
    fn end(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.cancel();
    }

    /// Closes the connection because this node is leaving the cluster: like [`close`](Self::close),
    /// but the calls sent on it end once it has ended (with an unknown outcome), since no
    /// reply can reach this node any more.
    pub(crate) fn close_leaving(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
        self.end();
    }

    /// Ends the connection because it cannot go on (the peer went away or broke the
    /// protocol): nothing more is written.
    pub(crate) fn break_off(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.end();
    }

    /// Whether it ended because the peer went away, a read or write failed, or the peer broke
    /// the protocol (not because this node closed it).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Whether the connection is closing or closed: an atomic load, where the token's
    /// own check takes a lock (this one is asked several times per call).
    pub(crate) fn is_closed(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Resolves when the connection closes.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Resolves once the connection has ended in a way that means no answer to the frame of
    /// `ticket` can come over it: the frame never left ([`Fate::NeverSent`]), or it left and
    /// the connection then broke or was closed because this node is leaving
    /// ([`Fate::MaybeReceived`]). Never resolves while the connection lives, nor after this
    /// node dropped it as a duplicate once the frame had left (the peer answers over the
    /// connection kept).
    pub(crate) async fn lost(&self, ticket: Ticket) -> Fate {
        match self.outcome(ticket).await {
            Some(fate) => fate,
            None => std::future::pending().await,
        }
    }

    /// Resolves once the connection has ended, with what became of the frame of `ticket`:
    /// `None` when it left and the connection was then closed on purpose (see
    /// [`lost`](Self::lost)).
    pub(crate) async fn outcome(&self, ticket: Ticket) -> Option<Fate> {
        self.finished.cancelled().await;
        self.fate(ticket)
    }

    /// What became of the frame of `ticket`, once nothing more is written: `None` when the
    /// connection was closed on purpose after the frame left.
    fn fate(&self, ticket: Ticket) -> Option<Fate> {
        if ticket.0 >= self.sent.load(Ordering::SeqCst) {
            return Some(Fate::NeverSent);
        }
        if self.broken.load(Ordering::SeqCst) || self.abandoned.load(Ordering::SeqCst) {
            return Some(Fate::MaybeReceived);
        }
        None
    }
}

/// A call under way on a connection (see [`Connection::outstanding`]).
pub(crate) struct Outstanding(Connection);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A frame could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error(transparent)]
    Closed(#[from] Closed),
    #[error("the frame could not be encoded: {0}")]
    Encode(String),
    #[error("the frame has {len} bytes, more than the {max} a peer accepts (max_frame_len)")]
    TooLong { len: usize, max: usize },
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Why a peer could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    TimedOut(std::net::SocketAddr),
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: std::net::SocketAddr,
        source: HandshakeError,
    },
    #[error("{addr} answered as {found}, not {expected}")]
    WrongPeer {
        addr: std::net::SocketAddr,
        expected: NodeId,
        found: NodeId,
    },
}

/// Dials `peer` at `addr` over `network`, authenticates both ways as `me`, and starts the
/// connection's reader (handing frames to `inbound`) and writer.
pub(crate) async fn dial(
    network: &Network,
    config: &ClusterConfig,
    me: &Identity<'_>,
    peer: &NodeId,
    addr: std::net::SocketAddr,
    inbound: Arc<dyn Inbound>,
) -> Result<Connection, DialError> {
    let attempt = async {
        let stream = network
            .connect(addr, config)
            .await
            .map_err(|error| match error {
                ConnectError::Connect(source) => DialError::Connect { addr, source },
                ConnectError::Tls(source) => DialError::Tls { addr, source },
            })?;
        let mut transport = framed(stream);
        let authenticated = handshake(&mut transport, me, Role::Dialer)
            .await
            .map_err(|source| DialError::Handshake { addr, source })?;
        if authenticated.peer != *peer {
            return Err(DialError::WrongPeer {
                addr,
                expected: peer.clone(),
                found: authenticated.peer,
            });
        }
        Ok((transport, authenticated))
    };
    let (transport, authenticated) = tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| DialError::TimedOut(addr))??;
    Ok(start(
        config,
        transport,
        authenticated,
        me.node.clone(),
        inbound,
    ))
}

/// Why a connection a peer dialed was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    #[error("cannot set the options of the connection: {0}")]
    Tune(std::io::Error),
    #[error("the peer sent nothing within the first-byte timeout")]
    Silent,
    #[error("the handshake did not finish within the connect timeout")]
    TimedOut,
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

impl AcceptError {
    /// The kind of failure, for the counts of a log line.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Tune(_) => "socket options failed",
            Self::Silent => "silent",
            Self::TimedOut => "timed out",
            Self::Handshake(_) => "handshake failed",
        }
    }
}

/// Authenticates a connection a peer dialed, as `me`, and starts its reader (handing frames
/// to `inbound`) and writer. The peer must send its first byte within the first-byte timeout
/// and finish the handshake within the connect timeout.
pub(crate) async fn accept(
    config: &ClusterConfig,
    me: &Identity<'_>,
    mut stream: Incoming,
    inbound: Arc<dyn Inbound>,
) -> Result<Connection, AcceptError> {
    stream.tune(config).map_err(AcceptError::Tune)?;
    let outcome = tokio::time::timeout(config.connect_timeout, async {
        tokio::time::timeout(config.first_byte_timeout, stream.first_byte())
            .await
            .map_err(|_| AcceptError::Silent)?
            .map_err(HandshakeError::Io)?;
        let stream = stream.secure(config).await.map_err(HandshakeError::Io)?;
        let mut transport = framed(stream);
        let authenticated = handshake(&mut transport, me, Role::Listener).await?;
        Ok::<_, AcceptError>((transport, authenticated))
    })
    .await
    .map_err(|_| AcceptError::TimedOut)?;
    let (transport, authenticated) = outcome?;
    let dialer = authenticated.peer.clone();
    Ok(start(config, transport, authenticated, dialer, inbound))
}

/// How a connection writes: its write half, bytes already buffered for it (by the
/// handshake), its sealer, and whether a failed write is known to have written nothing.
struct Writing<'a> {
    io: WriteHalf<Stream>,
    already_buffered: &'a [u8],
    sealer: Sealer,
    exact_writes: bool,
}

impl Connection {
    /// A connection's shared state, before its reader and writer tasks start.
    fn new(peer: NodeId, dialer: NodeId, writing: Writing<'_>, peer_max_frame_len: usize) -> Self {
        let mut buf = Vec::with_capacity(8 * 1024);
        buf.extend_from_slice(writing.already_buffered);
        Connection(Arc::new(Shared {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            peer,
            dialer,
            queue: std::sync::Mutex::new(Queue {
                sealed: Vec::with_capacity(8 * 1024),
                ends: Vec::new(),
                bytes: writing.already_buffered.len() as u64,
                sealer: writing.sealer,
                queued: 0,
                shut: false,
                writing: false,
            }),
            room: Semaphore::new(OUTBOX),
            wake: Notify::new(),
            out: tokio::sync::Mutex::new(Outgoing {
                io: Some(writing.io),
                buf,
                ends: std::collections::VecDeque::new(),
                written: 0,
                exact_writes: writing.exact_writes,
            }),
            closed: CancellationToken::new(),
            closing: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            finished: CancellationToken::new(),
            outstanding: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            peer_max_frame_len,
            established: tokio::time::Instant::now(),
        }))
    }

    /// A connection to `peer` dialed by `dialer` with no reader or writer task, over an
    /// in-memory stream that takes 1 KiB; the peer's end is returned, unread.
    #[cfg(test)]
    pub(crate) fn detached(peer: NodeId, dialer: NodeId) -> (Self, tokio::io::DuplexStream) {
        let (stream, far) = tokio::io::duplex(1024);
        let (_, io) = tokio::io::split(Box::new(stream) as Stream);
        let connection = Self::new(
            peer,
            dialer,
            Writing {
                io,
                already_buffered: &[],
                sealer: crate::seal::pair(&[0; crate::seal::KEY_LEN], Role::Dialer).0,
                exact_writes: true,
            },
            1024 * 1024,
        );
        (connection, far)
    }

    /// How many frames were ever queued on this connection.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> u64 {
        lock(&self.queue).queued
    }
}

/// The longest frame (before its MAC) this node accepts: its `max_frame_len`, within what a
/// 4-byte length prefix can carry with the MAC.
pub(crate) fn frame_limit(config: &ClusterConfig) -> u32 {
    let limit = config.max_frame_len.min(u32::MAX as usize - TAG_LEN);
    u32::try_from(limit).unwrap_or(u32::MAX)
}

/// Spawns the reader and writer of an authenticated connection.
fn start(
    config: &ClusterConfig,
    mut transport: Transport,
    authenticated: Authenticated,
    dialer: NodeId,
    inbound: Arc<dyn Inbound>,
) -> Connection {
    let Authenticated {
        peer,
        peer_max_frame_len,
        sealer,
        mut opener,
    } = authenticated;
    let max_frame_len = frame_limit(config) as usize;
    let peer_max_frame_len = (peer_max_frame_len as usize).min(u32::MAX as usize - TAG_LEN);
    // Authenticated: frames up to the configured size are accepted from now on.
    transport
        .codec_mut()
        .set_max_frame_length(max_frame_len + TAG_LEN);
    let parts = transport.into_parts();
    let (read, write) = tokio::io::split(parts.io);
    let mut frames = reader(read, parts.codec, parts.read_buf);
    let connection = Connection::new(
        peer,
        dialer,
        Writing {
            io: write,
            already_buffered: &parts.write_buf,
            sealer,
            exact_writes: writes_are_exact(config),
        },
        peer_max_frame_len,
    );
    let writer = connection.clone();
    tokio::spawn(async move {
        let shared = &*writer.0;
        loop {
            tokio::select! {
                biased;
                () = shared.closed.cancelled() => break,
                () = shared.wake.notified() => {}
            }
            let mut out = shared.out.lock().await;
            if shared.closed.is_cancelled() {
                break;
            }
            let written = tokio::select! {
                biased;
                () = shared.closed.cancelled() => break,
                written = out.write_queued(shared, None) => written,
            };
            if let Err(error) = written {
                tracing::debug!(peer = %writer.peer, %error, "a write failed; the connection ends");
                writer.break_off();
                break;
            }
        }
        let mut out = if shared.broken.load(Ordering::SeqCst) {
            shared.out.lock().await
        } else {
            // Closed on purpose: what was queued before still goes out (a reply sent just
            // before a graceful shutdown), unless the peer stopped reading.
            let flushed = tokio::time::timeout(FINAL_FLUSH_LIMIT, async {
                let mut out = shared.out.lock().await;
                let _ = out.write_queued(shared, None).await;
                if let Some(io) = out.io.as_mut() {
                    let _ = io.shutdown().await;
                }
                out
            })
            .await;
            match flushed {
                Ok(out) => out,
                Err(_) => shared.out.lock().await,
            }
        };
        // Whatever is still queued never leaves: its senders learn so from `lost`.
        {
            let mut queue = lock(&shared.queue);
            queue.shut = true;
            queue.sealed.clear();
            queue.ends.clear();
        }
        out.io = None;
        out.buf.clear();
        drop(out);
        shared.room.close();
        shared.finished.cancel();
    });
    let calls = serve_calls(connection.clone());
    let reader = connection.clone();
    tokio::spawn(async move {
        let _end_on_unwind = EndOnUnwind {
            connection: reader.clone(),
            inbound: Some(inbound.clone()),
        };
        // Waited for across the loop: made afresh in each turn, it would register with the
        // token (a lock) for every frame read.
        let closed = reader.closed.cancelled();
        tokio::pin!(closed);
        let ended_by_peer = loop {
            let next = tokio::select! {
                biased;
                () = &mut closed => break false,
                next = frames.next() => next,
            };
            let bytes = match next {
                None => {
                    tracing::debug!(peer = %reader.peer, "the peer closed the connection");
                    break true;
                }
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => {
                    // An oversized frame, or a broken socket: this connection ends, the node
                    // goes on.
                    tracing::warn!(peer = %reader.peer, %error, "closing a connection after a bad read");
                    break true;
                }
            };
            let payload_len = match opener.open(&bytes) {
                Ok(payload) => payload.len(),
                Err(error) => {
                    tracing::warn!(peer = %reader.peer, %error, "closing a connection after a frame that failed authentication");
                    break true;
                }
            };
            let len = bytes.len();
            // Shared, not copied: the body the header leaves is a slice of these bytes.
            let payload = bytes.freeze().slice(..payload_len);
            match Header::read(payload) {
                Ok((header, body)) => {
                    if let Some(call) = inbound.frame(&reader, header, body) {
                        // Fails only once the serving task is gone, which it is only after
                        // a panic that ended this connection too.
                        let _ = calls.send((call, reader.outstanding()));
                    }
                }
                Err(error) => {
                    tracing::warn!(peer = %reader.peer, %error, len, "closing a connection after a malformed frame");
                    break true;
                }
            }
        };
        if ended_by_peer {
            reader.break_off();
        }
        // The calls under way run on (a reply can still reach its caller over another
        // connection): the serving task drives them to their end.
        drop(calls);
        inbound.ended(&reader);
    });
    connection
}

/// Spawns the task that serves the calls `connection` reads, until the reader has ended and
/// every call it handed over is answered; comes back as where the reader hands them, each
/// counted as under way until its serving future ends.
///
/// Beside the reader, not in it: the node runs each call's handler inside its serving future
/// (no task per call), so a slow handler holds up the calls of its connection, not the reading
/// of frames (replies to this node's own calls) while it awaits. Cancels come through it, in
/// the order they were read, after the first turn of the calls before them. One that blocks its
/// thread, which handlers must not do, holds up whatever that thread would run: on a tokio
/// worker that just left the I/O driver, every socket and timer of the runtime until it
/// returns (tokio hands the driver on only when a worker parks).
fn serve_calls(connection: Connection) -> mpsc::UnboundedSender<(Serving, Outstanding)> {
    let (sender, mut calls) = mpsc::unbounded_channel::<(Serving, Outstanding)>();
    tokio::spawn(async move {
        let _end_on_unwind = EndOnUnwind {
            connection: connection.clone(),
            inbound: None,
        };
        let mut serving = futures::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                call = calls.recv() => match call {
                    Some((mut call, under_way)) => {
                        // Its first turn now, before anything read after it: most calls end in
                        // it, and one still running is then registered for the cancels that
                        // follow it (see `serve`).
                        if crate::sync::poll_once(&mut call).await.is_pending() {
                            serving.push(call.map(move |()| drop(under_way)));
                        }
                    }
                    None => break,
                },
                Some(()) = serving.next(), if !serving.is_empty() => {}
            }
        }
        while serving.next().await.is_some() {}
    });
    sender
}

/// Ends the connection when its reader or serving task unwinds (a panic in something it
/// drives): a connection nobody reads, or whose calls nobody serves, would stay registered as
/// live, and every call on it would wait for its deadline instead of failing over.
struct EndOnUnwind {
    connection: Connection,
    /// Told the connection ended, by the reader's guard; the serving task's guard only breaks
    /// the connection off, and the reader, seeing it closed, tells.
    inbound: Option<Arc<dyn Inbound>>,
}

impl Drop for EndOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(peer = %self.connection.peer, "a task of a connection panicked; the connection ends");
            self.connection.break_off();
            if let Some(inbound) = &self.inbound {
                inbound.ended(&self.connection);
            }
        }
    }
}

#[cfg(test)]
mod tests;
