//! Unit tests of the connection: tuning, reading, write accounting and the writer role.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::*;
use crate::config::ClusterConfig;
use crate::transport::tcp_dialed;

/// No Nagle delay, keepalive on, its idle time, interval and probes, and (on Linux) the
/// user timeout.
type Options = (bool, bool, Duration, Duration, u32, Option<Duration>);

fn options_of(socket: socket2::SockRef<'_>) -> Options {
    #[cfg(target_os = "linux")]
    let user_timeout = socket.tcp_user_timeout().unwrap();
    #[cfg(not(target_os = "linux"))]
    let user_timeout = None;
    (
        socket.tcp_nodelay().unwrap(),
        socket.keepalive().unwrap(),
        socket.tcp_keepalive_time().unwrap(),
        socket.tcp_keepalive_interval().unwrap(),
        socket.tcp_keepalive_retries().unwrap(),
        user_timeout,
    )
}

/// Drops every frame.
struct Ignore;

impl Inbound for Ignore {
    fn frame(&self, _: &Connection, _: Header, _: Body) -> Option<Serving> {
        None
    }

    fn ended(&self, _: &Connection) {}
}

/// Runs `accept` on `accepted` as node `m` of cluster `c`, dropping every frame.
async fn accept_tcp(
    config: &ClusterConfig,
    accepted: tokio::net::TcpStream,
) -> Result<Connection, AcceptError> {
    let me = NodeId::new("m", 1);
    let identity = Identity {
        cluster_id: "c",
        node: &me,
        secret: b"sixteen or more secret bytes",
        max_frame_len: 1 << 20,
    };
    accept(config, &identity, Incoming::Tcp(accepted), Arc::new(Ignore)).await
}

/// Both ends of a cluster connection get the options: the dialed one from `tcp_dialed`,
/// the accepted one from `accept`, the path a node's listener hands its connections to.
#[tokio::test]
async fn dialed_and_accepted_connections_have_keepalive_and_no_nagle_delay() {
    let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec()).keepalive(
        Duration::from_secs(7),
        Duration::from_secs(3),
        4,
    );
    let expected = (
        true,
        true,
        Duration::from_secs(7),
        Duration::from_secs(3),
        4,
        cfg!(target_os = "linux").then_some(Duration::from_secs(7 + 3 * 4)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dialed = tcp_dialed(listener.local_addr().unwrap(), &config)
        .await
        .unwrap();
    assert_eq!(options_of(socket2::SockRef::from(&dialed)), expected);
    let (accepted, _) = listener.accept().await.unwrap();
    // The same socket, to look at once `accept` has taken the stream.
    let probe = socket2::SockRef::from(&accepted).try_clone().unwrap();
    assert_ne!(
        options_of(socket2::SockRef::from(&probe)),
        expected,
        "the accepted socket had the options before `accept`"
    );
    // No handshake comes: `accept` sets the options, then refuses the connection.
    drop(dialed);
    let refused = accept_tcp(&config, accepted).await;
    assert!(refused.is_err());
    assert_eq!(options_of(socket2::SockRef::from(&probe)), expected);
}

/// A stream whose writes all fail, as a TLS stream's write does when the socket breaks
/// after the session took the plaintext and wrote some of its records.
struct FailingWrites;

impl AsyncRead for FailingWrites {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl AsyncWrite for FailingWrites {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The fate of a frame whose write failed, on a stream whose failed writes are exact (plain
/// TCP) or not (TLS).
async fn fate_after_a_failed_write(exact_writes: bool) -> Option<Fate> {
    let peer = NodeId::new("peer", 1);
    let (_, io) = tokio::io::split(Box::new(FailingWrites) as Stream);
    let connection = Connection::new(
        peer.clone(),
        peer.clone(),
        Writing {
            io,
            already_buffered: &[],
            sealer: crate::seal::pair(&[0; crate::seal::KEY_LEN], Role::Dialer).0,
            exact_writes,
        },
        1024,
    );
    let frame = Frame::Cancel {
        reply_to: peer,
        request: 1,
    };
    // Nobody is writing: the sender writes, the write fails, the connection breaks.
    let ticket = connection.send(&frame).await.unwrap();
    assert!(connection.is_closed());
    connection.fate(ticket)
}

#[tokio::test]
async fn a_frame_handed_to_a_failed_tls_write_may_have_been_received() {
    assert_eq!(
        fate_after_a_failed_write(false).await,
        Some(Fate::MaybeReceived),
        "a TLS write can fail after some of its records went out"
    );
    assert_eq!(
        fate_after_a_failed_write(true).await,
        Some(Fate::NeverSent),
        "a failed TCP write wrote nothing"
    );
}

/// A stream that takes whole writes only as the test allows, one at a time.
#[derive(Clone, Default)]
struct GatedWrites(Arc<std::sync::Mutex<Gate>>);

#[derive(Default)]
struct Gate {
    allowed: usize,
    writes: usize,
    waiting: Option<std::task::Waker>,
}

impl GatedWrites {
    fn allow_one(&self) {
        let mut gate = self.0.lock().unwrap();
        gate.allowed += 1;
        if let Some(waker) = gate.waiting.take() {
            waker.wake();
        }
    }

    fn is_waiting(&self) -> bool {
        self.0.lock().unwrap().waiting.is_some()
    }
}

impl AsyncRead for GatedWrites {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl AsyncWrite for GatedWrites {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let mut gate = self.0.lock().unwrap();
        if gate.writes < gate.allowed {
            gate.writes += 1;
            std::task::Poll::Ready(Ok(buf.len()))
        } else {
            gate.waiting = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Others queue frames while a sender writes its own: once its frame is out, the sender
/// returns and leaves the rest to the writer task, instead of writing for everyone as
/// long as frames keep coming.
#[tokio::test]
async fn a_sender_stops_writing_once_its_own_frame_is_out() {
    let peer = NodeId::new("peer", 1);
    let gate = GatedWrites::default();
    let (_, io) = tokio::io::split(Box::new(gate.clone()) as Stream);
    let connection = Connection::new(
        peer.clone(),
        peer.clone(),
        Writing {
            io,
            already_buffered: &[],
            sealer: crate::seal::pair(&[0; crate::seal::KEY_LEN], Role::Dialer).0,
            exact_writes: true,
        },
        1024,
    );
    let frame = Frame::Cancel {
        reply_to: peer.clone(),
        request: 1,
    };
    let sender = tokio::spawn({
        let connection = connection.clone();
        let own = Frame::Cancel {
            reply_to: peer,
            request: 0,
        };
        async move { connection.send(&own).await.map(|_| ()) }
    });
    while !gate.is_waiting() {
        tokio::task::yield_now().await;
    }
    // Queued behind the write under way: these senders return at once.
    for _ in 0..3 {
        connection.send(&frame).await.unwrap();
    }
    gate.allow_one();
    tokio::time::timeout(Duration::from_secs(2), sender)
        .await
        .expect("the sender went on writing the frames of others")
        .unwrap()
        .unwrap();
    assert_eq!(connection.sent.load(Ordering::SeqCst), 1);
    tokio::time::timeout(Duration::from_secs(1), connection.wake.notified())
        .await
        .expect("the writer task was not told to write the rest");
}

#[test]
fn the_default_keepalive_gives_up_on_a_silent_peer_in_about_sixteen_seconds() {
    let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
    assert_eq!(config.keepalive.give_up_after(), Duration::from_secs(16));
    assert!(config.validate().is_ok());
    let too_eager = config.keepalive(Duration::ZERO, Duration::from_secs(1), 1);
    assert!(too_eager.validate().is_err());
}

/// A connection that stays silent is let go at the first-byte timeout, as a failure of its
/// own kind, long before the connect timeout that bounds a whole handshake.
#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_let_go_at_the_first_byte_timeout() {
    let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec())
        .connect_timeout(Duration::from_secs(3_600))
        .first_byte_timeout(Duration::from_millis(50));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let started = tokio::time::Instant::now();
    let refused = accept_tcp(&config, accepted).await;
    assert!(matches!(refused, Err(AcceptError::Silent)), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(3_600));
}

/// A frame's message is decoded where it is used, after the reader passed the frame on: a
/// message that does not decode still ends the connection, as a malformed frame does.
#[tokio::test]
async fn a_message_that_does_not_decode_ends_its_connection() {
    let peer = NodeId::new("z", 1);
    let (connection, _far) = Connection::detached(peer.clone(), peer.clone());
    let mut reply = Frame::Reply {
        request: 1,
        message: switchyard_messaging::Message::new("svc"),
    }
    .encode()
    .unwrap()
    .to_vec();
    reply.truncate(reply.len() - 2);
    let (_, body) = Header::read(bytes::Bytes::from(reply)).unwrap();
    assert!(connection.decode_body(&body).is_none());
    assert!(connection.is_broken());
    assert!(connection.is_closed());
}
