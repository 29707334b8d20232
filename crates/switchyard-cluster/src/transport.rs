//! The byte streams between nodes, knowing nothing of calls: connecting and listening, socket
//! tuning (no Nagle delay, keepalive, user timeout), TLS when configured, and length-delimited
//! framing. In unit tests, an in-memory network (`memory`) stands in for TCP behind the same
//! [`Stream`] type, so the cluster's logic runs without sockets and on paused time.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedParts, LengthDelimitedCodec};

use crate::config::ClusterConfig;

/// The largest frame accepted before the peer is authenticated: a handshake frame is small.
const HANDSHAKE_FRAME_LEN: usize = 1_024;

/// A byte stream to a peer: plain TCP, TLS over it, or (in tests) an in-memory pipe.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A stream to a peer, whatever carries it.
pub(crate) type Stream = Box<dyn Io>;

/// A stream cut into length-delimited frames.
pub(crate) type Transport = Framed<Stream, LengthDelimitedCodec>;

/// `stream` in frames of at most the handshake's size (raised once the peer is authenticated).
pub(crate) fn framed(stream: Stream) -> Transport {
    Framed::new(stream, framed_codec())
}

/// The framing of a connection before the peer is authenticated.
pub(crate) fn framed_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(HANDSHAKE_FRAME_LEN)
        .new_codec()
}

/// The frames of `read`, starting with those in `already_read` (read with the handshake): they
/// are decoded first, without waiting for more bytes (a reader built afresh over a filled
/// buffer would wait).
pub(crate) fn reader<R: AsyncRead>(
    read: R,
    codec: LengthDelimitedCodec,
    already_read: BytesMut,
) -> Framed<R, LengthDelimitedCodec> {
    let mut parts = FramedParts::new::<Bytes>(read, codec);
    parts.read_buf = already_read;
    Framed::from_parts(parts)
}

/// Where connections go to and come from.
#[derive(Clone)]
pub(crate) enum Network {
    /// TCP, tuned, with TLS when the configuration has it.
    Tcp,
    /// An in-memory network of pipes, for tests of the cluster's logic.
    #[cfg(test)]
    Memory(memory::MemoryNetwork),
}

/// Why a stream to a peer could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The connection itself failed.
    Connect(std::io::Error),
    /// The TLS handshake failed.
    Tls(std::io::Error),
}

impl Network {
    /// A stream to the listener at `addr`, tuned and secured as `config` says.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        config: &ClusterConfig,
    ) -> Result<Stream, ConnectError> {
        match self {
            Self::Tcp => {
                let stream = tcp_dialed(addr, config)
                    .await
                    .map_err(ConnectError::Connect)?;
                secure_dialed(config, stream)
                    .await
                    .map_err(ConnectError::Tls)
            }
            #[cfg(test)]
            Self::Memory(network) => Ok(Box::new(
                network.connect(addr).map_err(ConnectError::Connect)?,
            )),
        }
    }
}

/// Where a node takes the connections its peers dial.
pub(crate) enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// The end of an in-memory network's pipes that arrive at one address.
    #[cfg(test)]
    Memory(tokio::sync::mpsc::UnboundedReceiver<memory::MemoryStream>),
}

/// A connection a peer dialed, before tuning and TLS.
pub(crate) enum Incoming {
    Tcp(TcpStream),
    #[cfg(test)]
    Memory(memory::MemoryStream),
}

impl Listener {
    /// The next connection a peer dialed.
    pub(crate) async fn accept(&mut self) -> std::io::Result<Incoming> {
        match self {
            Self::Tcp(listener) => Ok(Incoming::Tcp(listener.accept().await?.0)),
            #[cfg(test)]
            Self::Memory(arrivals) => match arrivals.recv().await {
                Some(stream) => Ok(Incoming::Memory(stream)),
                // No sender is left: nothing more can arrive.
                None => std::future::pending().await,
            },
        }
    }
}

impl Incoming {
    /// Where it comes from, when known.
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(stream) => stream.peer_addr().ok(),
            #[cfg(test)]
            Self::Memory(_) => None,
        }
    }

    /// Resolves once the peer has sent a byte or closed (for TCP, without consuming it); at
    /// once for an in-memory link.
    pub(crate) async fn first_byte(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.peek(&mut [0]).await.map(drop),
            #[cfg(test)]
            Self::Memory(_) => Ok(()),
        }
    }

    /// Sets the options of every cluster connection (see [`tune`]).
    pub(crate) fn tune(&self, config: &ClusterConfig) -> std::io::Result<()> {
        match self {
            Self::Tcp(stream) => tune(stream, config),
            #[cfg(test)]
            Self::Memory(_) => Ok(()),
        }
    }

    /// The stream, under TLS when the configuration has it.
    pub(crate) async fn secure(self, config: &ClusterConfig) -> std::io::Result<Stream> {
        match self {
            Self::Tcp(stream) => secure_accepted(config, stream).await,
            #[cfg(test)]
            Self::Memory(stream) => Ok(Box::new(stream)),
        }
    }
}

/// Connects to a peer's listener, with the options of every cluster connection.
pub(crate) async fn tcp_dialed(
    addr: SocketAddr,
    config: &ClusterConfig,
) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    tune(&stream, config)?;
    Ok(stream)
}

/// The options of every cluster connection, dialed or accepted: no Nagle delay (calls are
/// small and latency-bound), and TCP keepalive, so the kernel closes the connection to a peer
/// that vanished without a word (its host lost power, a cable was cut) even before gossip
/// declares it dead. On Linux `TCP_USER_TIMEOUT` also bounds how long written data may stay
/// unacknowledged, which keepalive alone does not cover while a write is pending.
pub(crate) fn tune(stream: &TcpStream, config: &ClusterConfig) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = config.keepalive;
    let params = socket2::TcpKeepalive::new().with_time(keepalive.idle);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd",
        target_os = "windows"
    ))]
    let params = params
        .with_interval(keepalive.interval)
        .with_retries(keepalive.retries);
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(&params)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(keepalive.give_up_after()))?;
    Ok(())
}

#[cfg(feature = "tls")]
async fn secure_dialed(config: &ClusterConfig, stream: TcpStream) -> std::io::Result<Stream> {
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
async fn secure_dialed(_: &ClusterConfig, stream: TcpStream) -> std::io::Result<Stream> {
    Ok(Box::new(stream))
}

#[cfg(feature = "tls")]
async fn secure_accepted(config: &ClusterConfig, stream: TcpStream) -> std::io::Result<Stream> {
    match &config.tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            Ok(Box::new(acceptor.accept(stream).await?))
        }
        None => Ok(Box::new(stream)),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure_accepted(_: &ClusterConfig, stream: TcpStream) -> std::io::Result<Stream> {
    Ok(Box::new(stream))
}

/// Whether a write that fails on this node's connections is known to have written nothing of
/// what it was handed. True of plain TCP (one system call, which either took bytes or
/// failed) and of in-memory pipes. Not of TLS: the TLS stream takes the plaintext into its
/// session, then writes records in a loop, and can fail after earlier records reached the
/// kernel.
#[cfg(feature = "tls")]
pub(crate) fn writes_are_exact(config: &ClusterConfig) -> bool {
    config.tls.is_none()
}

#[cfg(not(feature = "tls"))]
pub(crate) fn writes_are_exact(_: &ClusterConfig) -> bool {
    true
}

/// The in-memory twin of TCP: listeners by address, each dial a `tokio::io::duplex` pipe.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use futures::FutureExt;
    use futures::future::BoxFuture;
    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::Listener;
    use crate::sync::lock;

    /// How many bytes a pipe holds in each direction before a writer waits.
    const PIPE_CAPACITY: usize = 256 * 1024;

    /// The listeners of an in-memory network, and the links dialed to each. Cheap to clone:
    /// clones share them.
    #[derive(Clone, Default)]
    pub(crate) struct MemoryNetwork {
        shared: Arc<Mutex<Shared>>,
    }

    #[derive(Default)]
    struct Shared {
        listeners: HashMap<SocketAddr, mpsc::UnboundedSender<MemoryStream>>,
        /// What cuts each link dialed to an address.
        links: HashMap<SocketAddr, Vec<CancellationToken>>,
    }

    /// One end of an in-memory link: a pipe that fails, both ways and at both ends, once the
    /// link is cut, as a socket does when its connection is reset.
    pub(crate) struct MemoryStream {
        pipe: DuplexStream,
        cut: CancellationToken,
        /// Wakes a read or write waiting on the pipe when the link is cut.
        on_cut: BoxFuture<'static, ()>,
    }

    impl MemoryStream {
        fn new(pipe: DuplexStream, cut: CancellationToken) -> Self {
            let on_cut = cut.clone().cancelled_owned().boxed();
            Self { pipe, cut, on_cut }
        }

        fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
            if self.cut.is_cancelled() || self.on_cut.poll_unpin(cx).is_ready() {
                return Err(std::io::ErrorKind::ConnectionReset.into());
            }
            Ok(())
        }
    }

    impl AsyncRead for MemoryStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.check(cx)?;
            Pin::new(&mut self.pipe).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for MemoryStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.check(cx)?;
            Pin::new(&mut self.pipe).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.check(cx)?;
            Pin::new(&mut self.pipe).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.pipe).poll_shutdown(cx)
        }
    }

    impl MemoryNetwork {
        /// Listens at `addr` (replacing any earlier listener there).
        pub(crate) fn listen(&self, addr: SocketAddr) -> Listener {
            let (arrivals, listener) = mpsc::unbounded_channel();
            lock(&self.shared).listeners.insert(addr, arrivals);
            Listener::Memory(listener)
        }

        /// Stops listening at `addr`: later dials there are refused.
        pub(crate) fn unlisten(&self, addr: SocketAddr) {
            lock(&self.shared).listeners.remove(&addr);
        }

        /// Cuts every link dialed to `addr` so far: reads and writes fail at both ends.
        pub(crate) fn cut(&self, addr: SocketAddr) {
            for link in lock(&self.shared).links.remove(&addr).into_iter().flatten() {
                link.cancel();
            }
        }

        /// A link to the listener at `addr`; refused when nobody listens there.
        pub(crate) fn connect(&self, addr: SocketAddr) -> std::io::Result<MemoryStream> {
            let (near, far) = tokio::io::duplex(PIPE_CAPACITY);
            let cut = CancellationToken::new();
            let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            let mut shared = lock(&self.shared);
            let arrivals = shared.listeners.get(&addr).ok_or_else(refused)?;
            arrivals
                .send(MemoryStream::new(far, cut.clone()))
                .map_err(|_| refused())?;
            shared.links.entry(addr).or_default().push(cut.clone());
            Ok(MemoryStream::new(near, cut))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use bytes::BufMut;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn frames_read_with_the_handshake_are_decoded_without_waiting_for_more() {
        let (_peer, local) = tokio::io::duplex(64);
        let mut already_read = BytesMut::new();
        already_read.put_u32(3);
        already_read.put_slice(b"abc");
        let mut frames = reader(local, LengthDelimitedCodec::new(), already_read);
        let first = tokio::time::timeout(Duration::from_secs(1), frames.next())
            .await
            .expect("the frame already read waits for more bytes");
        assert_eq!(&first.unwrap().unwrap()[..], b"abc");
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_network_connects_only_to_a_listener() {
        let network = memory::MemoryNetwork::default();
        let addr: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
        let mut listener = network.listen(addr);
        let mut dialed = Network::Memory(network.clone())
            .connect(addr, &config)
            .await
            .unwrap();
        let mut accepted = listener
            .accept()
            .await
            .unwrap()
            .secure(&config)
            .await
            .unwrap();
        dialed.write_all(b"ping").await.unwrap();
        let mut read = [0; 4];
        accepted.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"ping");
        network.cut(addr);
        assert!(
            dialed.write_all(b"ping").await.is_err(),
            "written after the cut"
        );
        assert!(
            accepted.read(&mut read).await.is_err(),
            "read after the cut"
        );
        network.unlisten(addr);
        let refused = Network::Memory(network).connect(addr, &config).await;
        assert!(matches!(refused, Err(ConnectError::Connect(_))));
    }
}
