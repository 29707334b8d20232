//! Authenticated connections to peers: one per pair of nodes, multiplexed by request ids.
//!
//! Either node may dial; when both did at once, the connection dialed by the smaller node id
//! is kept and the other closed, so both sides settle on the same one. Frames are encoded by
//! the sender's task and written by one writer task per connection, which flushes once per
//! burst: pipelined calls share system calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use switchyard_messaging::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::cluster::Inner;
use crate::frame::Frame;
use crate::handshake::{Authenticated, HandshakeError, Identity, Role, handshake};
use crate::seal::{Sealer, TAG_LEN};

/// How many encoded frames may wait for a connection's writer.
const OUTBOX: usize = 4_096;

/// The largest frame accepted before the peer is authenticated: a handshake frame is small.
const HANDSHAKE_FRAME_LEN: usize = 1_024;

/// A live, authenticated connection to a peer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) peer: NodeId,
    /// Who dialed: the connection dialed by the smaller node id wins a tie.
    pub(crate) dialer: NodeId,
    outbox: mpsc::Sender<Bytes>,
    /// The write half, shared by the writer task and senders that find it free.
    sink: Arc<tokio::sync::Mutex<Outgoing>>,
    closed: CancellationToken,
}

/// The write half and the sealer: frames are sealed in the order they are written.
struct Outgoing {
    sink: futures::stream::SplitSink<Transport, Bytes>,
    sealer: Sealer,
}

impl Outgoing {
    async fn feed(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let sealed = self.sealer.seal(payload);
        self.sink.feed(sealed).await
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

impl Connection {
    /// Queues a frame; fails when the connection has closed.
    pub(crate) async fn send(&self, frame: &Frame) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed(Closed(self.peer.clone())));
        }
        let bytes = frame
            .encode()
            .map_err(|e| SendError::Encode(e.to_string()))?;
        // Nobody writing and nothing queued: write it now, from this task, sparing the hand-off
        // to the writer task (a wake-up on each side of a round trip). Otherwise queue it, and
        // the writer sends it with the rest of its burst.
        if self.outbox.capacity() == self.outbox.max_capacity()
            && let Ok(mut out) = self.sink.try_lock()
        {
            let written = match out.feed(&bytes).await {
                Ok(()) => out.sink.flush().await,
                Err(error) => Err(error),
            };
            return match written {
                Ok(()) => Ok(()),
                Err(_) => {
                    self.closed.cancel();
                    Err(SendError::Closed(Closed(self.peer.clone())))
                }
            };
        }
        self.outbox
            .send(bytes)
            .await
            .map_err(|_| SendError::Closed(Closed(self.peer.clone())))
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.outbox.is_closed()
    }

    /// Resolves when the connection closes.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }
}

/// A frame could not be queued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error(transparent)]
    Closed(#[from] Closed),
    #[error("the frame could not be encoded: {0}")]
    Encode(String),
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A byte stream to a peer: plain TCP, or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub(crate) type Stream = Box<dyn Io>;

pub(crate) type Transport = Framed<Stream, LengthDelimitedCodec>;

fn framed(stream: Stream) -> Transport {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(HANDSHAKE_FRAME_LEN)
        .new_codec();
    Framed::new(stream, codec)
}

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

/// Dials `peer` at `addr`, authenticates both ways, and starts serving the connection.
pub(crate) async fn dial(
    inner: &Arc<Inner>,
    peer: &NodeId,
    addr: std::net::SocketAddr,
) -> Result<Connection, DialError> {
    let config = &inner.config;
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| DialError::Connect { addr, source })?;
        // Calls are small and latency-bound: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let stream = secure_dialed(config, stream)
            .await
            .map_err(|source| DialError::Tls { addr, source })?;
        let mut transport = framed(stream);
        let authenticated = handshake(&mut transport, &inner.identity(), Role::Dialer)
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
    Ok(start(inner, transport, authenticated, inner.me.clone()))
}

/// Authenticates a connection a peer dialed, and starts serving it.
pub(crate) async fn accept(inner: Arc<Inner>, stream: TcpStream) {
    let remote = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let outcome = tokio::time::timeout(inner.config.connect_timeout, async {
        let stream = secure_accepted(&inner.config, stream).await?;
        let mut transport = framed(stream);
        let authenticated = handshake(&mut transport, &inner.identity(), Role::Listener).await?;
        Ok::<_, HandshakeError>((transport, authenticated))
    })
    .await;
    match outcome {
        Ok(Ok((transport, authenticated))) => {
            let dialer = authenticated.peer.clone();
            let connection = start(&inner, transport, authenticated, dialer);
            inner.register(connection);
        }
        Ok(Err(error)) => {
            tracing::warn!(?remote, %error, "refused an incoming connection");
        }
        Err(_) => {
            tracing::warn!(
                ?remote,
                "an incoming connection did not finish its handshake in time"
            );
        }
    }
}

#[cfg(feature = "tls")]
async fn secure_dialed(
    config: &crate::ClusterConfig,
    stream: TcpStream,
) -> std::io::Result<Stream> {
    match &config.tls {
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            Ok(Box::new(
                connector.connect(tls.server_name.clone(), stream).await?,
            ))
        }
        None => Ok(Box::new(stream)),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure_dialed(_: &crate::ClusterConfig, stream: TcpStream) -> std::io::Result<Stream> {
    Ok(Box::new(stream))
}

#[cfg(feature = "tls")]
async fn secure_accepted(
    config: &crate::ClusterConfig,
    stream: TcpStream,
) -> Result<Stream, HandshakeError> {
    match &config.tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            Ok(Box::new(acceptor.accept(stream).await?))
        }
        None => Ok(Box::new(stream)),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure_accepted(
    _: &crate::ClusterConfig,
    stream: TcpStream,
) -> Result<Stream, HandshakeError> {
    Ok(Box::new(stream))
}

/// Spawns the reader and writer of an authenticated connection.
fn start(
    inner: &Arc<Inner>,
    mut transport: Transport,
    authenticated: Authenticated,
    dialer: NodeId,
) -> Connection {
    let Authenticated {
        peer,
        sealer,
        mut opener,
    } = authenticated;
    // Authenticated: frames up to the configured size are accepted from now on.
    transport
        .codec_mut()
        .set_max_frame_length(inner.config.max_frame_len.saturating_add(TAG_LEN));
    let (outbox, mut queued) = mpsc::channel::<Bytes>(OUTBOX);
    let closed = CancellationToken::new();
    let (sink, mut frames) = transport.split();
    let sink = Arc::new(tokio::sync::Mutex::new(Outgoing { sink, sealer }));
    let connection = Connection {
        id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        peer: peer.clone(),
        dialer,
        outbox,
        sink: sink.clone(),
        closed: closed.clone(),
    };
    let writer_closed = closed.clone();
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                () = writer_closed.cancelled() => {
                    // Closing: what was queued before still goes out (a reply sent just
                    // before a graceful shutdown).
                    let mut out = sink.lock().await;
                    while let Ok(bytes) = queued.try_recv() {
                        if out.feed(&bytes).await.is_err() {
                            break;
                        }
                    }
                    let _ = out.sink.flush().await;
                    break;
                }
                next = queued.recv() => match next {
                    Some(bytes) => bytes,
                    None => break,
                },
            };
            let mut out = sink.lock().await;
            if out.feed(&first).await.is_err() {
                break;
            }
            // Everything already queued goes out with the same flush.
            while let Ok(more) = queued.try_recv() {
                if out.feed(&more).await.is_err() {
                    writer_closed.cancel();
                    return;
                }
            }
            if out.sink.flush().await.is_err() {
                break;
            }
        }
        writer_closed.cancel();
        let _ = sink.lock().await.sink.close().await;
    });
    let reader = connection.clone();
    let inner = inner.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = closed.cancelled() => break,
                next = frames.next() => next,
            };
            let bytes = match next {
                None => break,
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => {
                    // An oversized frame, or a broken socket: this connection ends, the node
                    // goes on.
                    tracing::warn!(peer = %reader.peer, %error, "closing a connection after a bad read");
                    break;
                }
            };
            let payload = match opener.open(&bytes) {
                Ok(payload) => payload,
                Err(error) => {
                    tracing::warn!(peer = %reader.peer, %error, "closing a connection after a frame that failed authentication");
                    break;
                }
            };
            match Frame::decode(payload) {
                Ok(frame) => crate::serve::handle(&inner, &reader, frame).await,
                Err(error) => {
                    tracing::warn!(peer = %reader.peer, %error, len = bytes.len(), "closing a connection after a malformed frame");
                    break;
                }
            }
        }
        closed.cancel();
        inner.forget(&reader);
    });
    connection
}

impl Inner {
    pub(crate) fn identity(&self) -> Identity<'_> {
        Identity {
            cluster_id: &self.config.cluster_id,
            node: &self.me,
            secret: &self.config.secret,
        }
    }
}
