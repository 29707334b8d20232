//! Hostile peers: raw TCP connections to a real node on 127.0.0.1 that send garbage, huge
//! length prefixes, frames before authentication, a recorded session replayed (its handshake
//! and its sealed frames), or nothing at all, while legitimate nodes call it and join it. The
//! node must not crash, must keep its memory bounded, and must answer every legitimate call.
//!
//! Each kind of attack comes from its own loopback address (127.0.0.x, which Linux routes to
//! the node on 127.0.0.1), as attackers on other hosts would; the legitimate nodes use
//! 127.0.0.1. Every loop is bounded in count and in time.
//!
//! The waits are generous ([`SERVICE_BOUND`]) so that a busy machine does not fail them: only
//! a real denial of service (a node that never joins, a call never answered) does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchyard_messaging::{Message, NodeId, Response, codec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{CLUSTER, TestNode, config, standard_routers, start_with, wait_for};

/// How long each attack runs (at least; the main one runs two such periods, and on until a
/// legitimate node has joined).
const ATTACK: Duration = Duration::from_secs(3);

/// The longest a legitimate node may take to join, or a legitimate call to be answered, under
/// attack: far beyond what a busy machine needs (about a second), so only a node that is
/// denied service fails.
const SERVICE_BOUND: Duration = Duration::from_secs(60);

/// The legitimate calls made under attack, at least.
const MIN_CALLS: u64 = 20;

/// The most connections each attacker opens: more than it can open while a test waits for
/// its legitimate nodes (the tests check the attack was still on), yet a bound.
const MAX_CONNECTIONS: u64 = 1_000_000;

/// The frames of the wire protocol as `docs/wire.md` gives them, to speak it without the
/// secret (the first variants, in their order: bincode encodes the variant's index).
#[derive(Serialize)]
enum Frame {
    Hello {
        protocol: u16,
        cluster_id: String,
        node: NodeId,
        nonce: [u8; 32],
        max_frame_len: u32,
    },
    #[allow(dead_code)]
    Proof { mac: Vec<u8> },
    #[allow(dead_code)]
    Refused { reason: String },
    Call {
        reply_to: NodeId,
        request: u64,
        hop: Hop,
        remaining_micros: u64,
        message: Message,
    },
}

#[derive(Serialize)]
enum Hop {
    First,
}

/// `frame`, encoded and length-prefixed as on the wire.
fn wire(frame: &Frame) -> Vec<u8> {
    let payload = codec::encode(frame).unwrap();
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

fn mallory() -> NodeId {
    NodeId::new("mallory", 1)
}

fn hello() -> Vec<u8> {
    wire(&Frame::Hello {
        protocol: 2,
        cluster_id: CLUSTER.to_owned(),
        node: mallory(),
        nonce: [7; 32],
        max_frame_len: 1 << 20,
    })
}

fn call() -> Vec<u8> {
    wire(&Frame::Call {
        reply_to: mallory(),
        request: 1,
        hop: Hop::First,
        remaining_micros: 1_000_000,
        message: Message::new("echo").with_request(&1_u64),
    })
}

/// A connection to `target` from the loopback address `source`.
async fn connect_from(source: [u8; 4], target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(target).await
}

/// What one attacker did.
#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    /// Connections on which the node sent anything back (its `Hello`, a `Refused`).
    answered: AtomicU64,
    /// How long the attack lasted.
    lasted: Duration,
}

/// Opens connections from `source` to `target` until `stop` (or [`MAX_CONNECTIONS`]), sends
/// `bytes` on each, and reads what comes back until the node closes it (at most a second).
async fn attack(
    source: [u8; 4],
    target: SocketAddr,
    bytes: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let started = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) && tally.connections.load(Ordering::SeqCst) < MAX_CONNECTIONS
    {
        let Ok(mut stream) = connect_from(source, target).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tally.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.write_all(&bytes).await;
        let mut buffer = [0_u8; 4_096];
        let mut answered = false;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                answered = true;
            }
        })
        .await;
        if answered {
            tally.answered.fetch_add(1, Ordering::SeqCst);
        }
    }
    tally.lasted = started.elapsed();
    tally
}

/// Keeps up to `count` connections from `source` open and silent until `stop` (or `most`
/// connections), each re-opened 100 ms after the node lets it go.
async fn hold_silent(
    source: [u8; 4],
    target: SocketAddr,
    count: usize,
    most: u64,
    stop: Arc<AtomicBool>,
) -> u64 {
    let opened = Arc::new(AtomicU64::new(0));
    let mut holders = Vec::new();
    for _ in 0..count {
        let (stop, opened) = (stop.clone(), opened.clone());
        holders.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && opened.load(Ordering::SeqCst) < most {
                let Ok(mut stream) = connect_from(source, target).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::SeqCst);
                let mut buffer = [0_u8; 64];
                // Held until the node lets it go (a silent peer never closes first).
                let _ = tokio::time::timeout(ATTACK, async {
                    while !matches!(stream.read(&mut buffer).await, Ok(0) | Err(_)) {}
                })
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    for holder in holders {
        let _ = holder.await;
    }
    opened.load(Ordering::SeqCst)
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A relay on 127.0.0.1 that records what the first connection through it sends towards
/// `target`: a real node's session, handshake and sealed frames, to replay later.
async fn recording_relay() -> (
    SocketAddr,
    tokio::sync::watch::Sender<Option<SocketAddr>>,
    Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (target, mut target_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
    let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = recorded.clone();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let Ok(Some(target)) = target_rx.wait_for(Option::is_some).await.map(|t| *t) else {
                return;
            };
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            let (mut in_read, mut in_write) = inbound.into_split();
            let (mut out_read, mut out_write) = outbound.into_split();
            let record = first.then(|| record.clone());
            first = false;
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 64 * 1024];
                while let Ok(read) = in_read.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    if let Some(record) = &record {
                        record.lock().unwrap().extend_from_slice(&buffer[..read]);
                    }
                    if out_write.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
            });
        }
    });
    (addr, target, recorded)
}

/// Calls `echo` on `caller` until `stop`, counting the calls (also in `made`) and those
/// answered with the right value. Each call may take up to [`SERVICE_BOUND`].
async fn keep_calling(caller: &TestNode, stop: &AtomicBool, made: &AtomicU64) -> (u64, u64) {
    let (mut calls, mut answered) = (0, 0);
    let options = switchyard_messaging::DispatchOptions::with_timeout(SERVICE_BOUND);
    while !stop.load(Ordering::SeqCst) && calls < 100_000 {
        calls += 1;
        let reply = caller
            .node
            .dispatch_with(Message::new("echo").with_request(&calls), options.clone())
            .await;
        if let Some(Response::OkWith(payload)) = reply.response()
            && payload
                .decode::<(u64, String)>()
                .is_ok_and(|(n, on)| n == calls && on == "z")
        {
            answered += 1;
        } else {
            eprintln!("legitimate call {calls} failed: {:?}", reply.response());
        }
        made.store(calls, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (calls, answered)
}

/// Waits until `joiner` sees `z` as a connected member.
async fn until_connected_to_z(joiner: &TestNode, what: &str) {
    wait_for(SERVICE_BOUND, what, || async {
        joiner
            .cluster
            .members()
            .iter()
            .any(|m| m.id.name() == "z" && m.connected)
    })
    .await;
}

/// Asserts that `caller`'s call of `echo` with `request` succeeds within [`SERVICE_BOUND`].
async fn assert_echo_answered(caller: &TestNode, request: u64) {
    let reply = caller
        .node
        .dispatch_with(
            Message::new("echo").with_request(&request),
            switchyard_messaging::DispatchOptions::with_timeout(SERVICE_BOUND),
        )
        .await;
    assert!(
        reply.response().is_some_and(Response::is_success),
        "{:?}",
        reply.response()
    );
}

/// Every attack at once on node `z`, while `a` calls it through a relay that recorded `a`'s
/// session (replayed by an attacker) and a new node joins: `z` answers every call, `b` joins,
/// and memory stops growing: the attack runs two periods of equal length, and the second
/// grows the process by at most half what the first did plus 4 MiB (the first takes the
/// warm-up: buffers, the joining node, the allocator's arenas). A leak grows both alike: one
/// of 1 KiB per hostile connection (thousands a period) would fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_attack_keeps_serving_joining_and_its_memory_bounded() {
    let (relay, relay_target, recorded) = recording_relay().await;
    // `a` has the smaller id, so it dials `z`: through the relay, which records the session.
    let z = start_with(
        "z",
        config(&[]).advertised_rpc_addr(relay),
        standard_routers,
    )
    .await;
    relay_target.send_replace(Some(z.cluster.rpc_addr()));
    let seed = vec![z.cluster.gossip_addr().to_string()];
    let a = start_with("a", config(&seed), |_| {}).await;
    wait_for(SERVICE_BOUND, "a connected to z", || async {
        a.cluster.members().iter().any(|m| m.connected)
    })
    .await;
    let reply = a
        .node
        .dispatch(Message::new("echo").with_request(&0_u64))
        .await;
    assert!(
        reply.response().is_some_and(Response::is_success),
        "{:?}",
        reply.response()
    );
    let session = recorded.lock().unwrap().clone();
    assert!(
        session.len() > 100,
        "the relay recorded {} bytes",
        session.len()
    );

    let before = rss_kib();
    let attack_started = tokio::time::Instant::now();
    let target = z.cluster.rpc_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut garbage = vec![0_u8; 4_096];
    getrandom::fill(&mut garbage).unwrap();
    let attacks = [
        ("garbage", [127, 0, 0, 3], garbage),
        (
            "huge length prefix",
            [127, 0, 0, 4],
            [0xFF_u8; 4].repeat(16),
        ),
        ("a call before authentication", [127, 0, 0, 5], call()),
        (
            "a call after hello, without proof",
            [127, 0, 0, 6],
            [hello(), call()].concat(),
        ),
        ("a recorded session replayed", [127, 0, 0, 7], session),
    ];
    let mut attackers = Vec::new();
    for (what, source, bytes) in attacks {
        let stop = stop.clone();
        attackers.push((what, tokio::spawn(attack(source, target, bytes, stop))));
    }
    let silent = tokio::spawn(hold_silent(
        [127, 0, 0, 8],
        target,
        100,
        MAX_CONNECTIONS,
        stop.clone(),
    ));
    let made = Arc::new(AtomicU64::new(0));
    let calling = {
        let (stop, made) = (stop.clone(), made.clone());
        tokio::spawn(async move {
            let counts = keep_calling(&a, &stop, &made).await;
            (a, counts)
        })
    };
    // A node joining during the attack connects to `z` (it dials: its id is smaller).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = start_with("b", config(&seed), |_| {}).await;
    until_connected_to_z(&b, "b connected to z during the attack").await;
    assert_echo_answered(&b, 0).await;
    // The first period: at least `ATTACK`, and until `b` joined.
    tokio::time::sleep_until(attack_started + ATTACK).await;
    let period = attack_started.elapsed();
    let middle = rss_kib();
    // The second, as long, with the same attacks; then on until enough calls were made.
    tokio::time::sleep(period).await;
    let after = rss_kib();
    wait_for(
        SERVICE_BOUND,
        "the legitimate calls under attack",
        || async { made.load(Ordering::SeqCst) >= MIN_CALLS },
    )
    .await;
    for (what, attacker) in &attackers {
        assert!(!attacker.is_finished(), "{what}: the attack ended too soon");
    }
    assert!(!silent.is_finished(), "the silent attack ended too soon");
    stop.store(true, Ordering::SeqCst);

    let (_a, (calls, answered)) = calling.await.unwrap();
    for (what, attacker) in attackers {
        let tally = attacker.await.unwrap();
        let (connections, answered) = (
            tally.connections.load(Ordering::SeqCst),
            tally.answered.load(Ordering::SeqCst),
        );
        eprintln!(
            "{what}: {connections} connections in {:?}, {answered} answered",
            tally.lasted
        );
        assert!(connections > 0, "{what}: no connection made");
        // Failed handshakes are throttled per address: 10 in a row, then one a second,
        // each with up to 8 handshakes of the address under way at once.
        let allowed = 10 + 8 * (tally.lasted.as_secs() + 2);
        assert!(
            answered <= allowed,
            "{what}: {answered} of {connections} connections answered in {:?}, more than {allowed}",
            tally.lasted
        );
    }
    eprintln!("silent: {} connections", silent.await.unwrap());
    eprintln!(
        "legitimate calls: {answered} of {calls} answered; RSS {before} KiB -> {middle} KiB -> {after} KiB (periods of {period:?})"
    );
    assert!(calls >= MIN_CALLS, "only {calls} calls made");
    assert_eq!(answered, calls, "calls went unanswered under attack");
    let (first, second) = (middle.saturating_sub(before), after.saturating_sub(middle));
    assert!(
        second <= first / 2 + 4 * 1024,
        "memory kept growing under attack: {first} KiB in the first period, {second} KiB in the second"
    );
    assert_eq!(
        z.cluster.stats().calls_served,
        calls + 2,
        "z served every call"
    );
}

/// Silent connections from one address, re-opened as soon as the node lets them go, do not
/// keep a legitimate node from joining (before the limits per address, they held every
/// handshake slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_keep_a_node_from_joining() {
    let z_config = config(&[]).connect_timeout(Duration::from_secs(2));
    let z = start_with("z", z_config, standard_routers).await;
    let stop = Arc::new(AtomicBool::new(false));
    let target = z.cluster.rpc_addr();
    let silent = tokio::spawn(hold_silent(
        [127, 0, 0, 9],
        target,
        200,
        MAX_CONNECTIONS,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seed = vec![z.cluster.gossip_addr().to_string()];
    // `b` has the smaller id: it must dial `z`, through the attack.
    let b = start_with("b", config(&seed), |_| {}).await;
    until_connected_to_z(&b, "b connected to z").await;
    assert!(!silent.is_finished(), "b joined after the attack ended");
    assert_echo_answered(&b, 1).await;
    stop.store(true, Ordering::SeqCst);
    assert!(silent.await.unwrap() >= 200, "the attack did not run");
}

/// Silent strangers from many addresses, each within its per-address limit and never
/// throttled here, cannot take the quarter of the handshake slots kept for members'
/// addresses: a member still joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_never_take_the_slots_kept_for_members() {
    let z_config = config(&[])
        .connect_timeout(Duration::from_secs(2))
        .first_byte_timeout(Duration::from_secs(2))
        .handshake_limits(64, 8)
        .throttle_failed_handshakes(1_000_000, Duration::from_millis(1));
    let z = start_with("z", z_config, standard_routers).await;
    let target = z.cluster.rpc_addr();
    let stop = Arc::new(AtomicBool::new(false));
    // 8 addresses × 8 slots: every slot, were none kept.
    let attackers: Vec<_> = (10..18)
        .map(|last| {
            tokio::spawn(hold_silent(
                [127, 0, 0, last],
                target,
                12,
                MAX_CONNECTIONS,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seed = vec![z.cluster.gossip_addr().to_string()];
    // `b` has the smaller id: it must dial `z`, from 127.0.0.1, a member's address.
    let b = start_with("b", config(&seed), |_| {}).await;
    until_connected_to_z(&b, "b connected to z").await;
    assert!(
        attackers.iter().all(|attacker| !attacker.is_finished()),
        "b joined after the attack ended"
    );
    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        assert!(attacker.await.unwrap() >= 8, "an attacker did not run");
    }
}
