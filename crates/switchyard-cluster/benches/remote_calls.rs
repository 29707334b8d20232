//! Calls between two processes on loopback over an authenticated cluster connection, beside a
//! raw tokio TCP echo of frames of the same sizes measured in the same run.
//!
//! - Round trip: one caller, one call at a time; p50 and p99. Floor: one frame written and its
//!   answer read over a plain tokio `TcpStream` (`TCP_NODELAY`) to the same other process, a
//!   floor round trip and a cluster call taken in turn.
//! - Pipelined: 64 calls in flight; calls per second. Floor: the raw echo with 64 frames in
//!   flight on one connection, batched as the cluster batches: each side reads what has
//!   arrived and answers every whole frame in it with one write (the client sends as many new
//!   frames as answers came back). One task per connection on each side, no codec, no locks:
//!   what a hand-written pipelined client and server over tokio reach.
//! - Allocations per call, counted in a pass of their own with both nodes in this process.
//!
//! The bench starts itself again as the serving process. Run with `cargo xtask bench` (which
//! writes `docs/benchmarks.md`) or `cargo bench -p switchyard-cluster --bench remote_calls`.
//! `SWITCHYARD_BENCH_PHASE=cluster` (or `floor`) runs only the pipelined cluster calls (or raw
//! echo), for `SWITCHYARD_BENCH_PHASE_SECONDS` (20), to profile one of them with `perf record`
//! (`cargo xtask profile remote_calls`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use criterion::{Criterion, criterion_group};
use hdrhistogram::Histogram;
use switchyard_bench_support::allocations::{self, Counter};
use switchyard_cluster::{Cluster, ClusterConfig};
use switchyard_messaging::{DispatchOptions, Message, Node, Response, Router, codec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use switchyard_bench_support::{self as support, median, runtime};

#[global_allocator]
static ALLOCATOR: Counter = &allocations::INSTRUMENTED_SYSTEM;

const CHILD: &str = "SWITCHYARD_BENCH_CLUSTER_CHILD";
const SECRET: &[u8] = b"benchmark secret, thirty-two byt";
const PAYLOAD: [u8; 16] = [7; 16];
const IN_FLIGHT: usize = 64;
/// The targets of issue 14.
const TARGET_P50_RATIO: f64 = 1.5;
const TARGET_RATE_RATIO: f64 = 0.25;
const TARGET_RATE: f64 = 250_000.0;

async fn echo(msg: Message) -> Message {
    let payload: Vec<u8> = msg.request().unwrap();
    msg.ok_with(&payload)
}

fn call() -> Message {
    Message::new("echo").with_request(&PAYLOAD.to_vec())
}

/// A node offering `echo` to the cluster.
async fn start_server_node() -> Cluster {
    let node = Node::new("server");
    node.register(
        Router::new("bench")
            .service("echo", echo)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    Cluster::start(node, ClusterConfig::new("bench", SECRET.to_vec()))
        .await
        .unwrap()
}

/// The serving process: a node offering `echo`, and a raw echo server.
fn serve() {
    let rt = runtime();
    rt.block_on(async {
        let cluster = start_server_node().await;
        let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_addr = raw.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = raw.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(raw_echo(stream));
            }
        });
        println!("ready {} {}", cluster.gossip_addr(), raw_addr);
        std::future::pending::<()>().await;
    });
}

/// Takes the whole frames at the front of `input`, returning how many, and calls `each` with
/// the first bytes of each payload.
fn whole_frames(input: &mut BytesMut, mut each: impl FnMut(&[u8])) -> usize {
    let mut count = 0;
    while input.len() >= 4 {
        let len = u32::from_be_bytes(input[..4].try_into().unwrap()) as usize;
        if input.len() < 4 + len {
            break;
        }
        each(&input[4..4 + len]);
        input.advance(4 + len);
        count += 1;
    }
    count
}

/// Answers every whole frame read with a frame as long as the cluster's reply (the first 4
/// bytes of a request say how long), all answers to what one read brought in one write.
async fn raw_echo(mut stream: TcpStream) {
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut output = Vec::with_capacity(64 * 1024);
    loop {
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        whole_frames(&mut input, |payload| {
            let len = u32::from_be_bytes(payload[..4].try_into().unwrap());
            output.extend_from_slice(&len.to_be_bytes());
            output.resize(output.len() + len as usize, 1);
        });
        if stream.write_all(&output).await.is_err() {
            return;
        }
        output.clear();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find(|line| line.starts_with("ready "))
        .unwrap();
    let mut words = line.split_whitespace().skip(1);
    let gossip = words.next().unwrap().to_owned();
    let raw = words.next().unwrap().parse().unwrap();
    (Server(child), gossip, raw)
}

/// Frame sizes of a call and its reply, as the cluster sends them (message plus framing).
fn frame_sizes() -> (usize, usize) {
    let request = codec::encode(&call()).unwrap().len() + 48;
    let reply = codec::encode(&call().ok_with(&PAYLOAD.to_vec()))
        .unwrap()
        .len()
        + 16;
    (request, reply)
}

/// A raw connection to the echo server, with the request frame it sends (length prefix
/// included): its payload tells the echo server how long its answer must be.
struct Raw {
    stream: TcpStream,
    input: BytesMut,
    request: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr, (request, reply): (usize, usize)) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut frame = Vec::with_capacity(4 + request);
        frame.extend_from_slice(&(request as u32).to_be_bytes());
        frame.extend_from_slice(&(reply as u32).to_be_bytes());
        frame.resize(4 + request, 0);
        Self {
            stream,
            input: BytesMut::with_capacity(64 * 1024),
            request: frame,
        }
    }

    /// Reads until at least one whole frame has come; how many did.
    async fn answers(&mut self) -> usize {
        loop {
            let answers = whole_frames(&mut self.input, |_| {});
            if answers > 0 {
                return answers;
            }
            assert!(self.stream.read_buf(&mut self.input).await.unwrap() > 0);
        }
    }

    /// Writes `count` requests with one write.
    async fn send(&mut self, count: usize) {
        let frames = self.request.repeat(count);
        self.stream.write_all(&frames).await.unwrap();
    }
}

async fn raw_round_trips(raw: &mut Raw, count: usize, histogram: &mut Histogram<u64>) {
    for _ in 0..count {
        let started = Instant::now();
        raw.send(1).await;
        assert_eq!(raw.answers().await, 1);
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
    }
}

/// Frames per second echoed with `IN_FLIGHT` outstanding on one raw connection: as many new
/// requests written, with one write, as answers came back in one read.
async fn raw_pipelined(raw: &mut Raw, window: Duration) -> f64 {
    let started = Instant::now();
    raw.send(IN_FLIGHT).await;
    let (mut sent, mut received) = (IN_FLIGHT, 0);
    while received < sent {
        let answers = raw.answers().await;
        received += answers;
        if started.elapsed() < window {
            raw.send(answers).await;
            sent += answers;
        }
    }
    received as f64 / started.elapsed().as_secs_f64()
}

async fn cluster_round_trips(node: &Node, count: usize, histogram: &mut Histogram<u64>) {
    for _ in 0..count {
        let started = Instant::now();
        let reply = node.dispatch(call()).await;
        assert!(
            matches!(reply.response(), Some(Response::OkWith(_))),
            "{:?}",
            reply.response()
        );
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
    }
}

/// Calls per second with `IN_FLIGHT` calls outstanding, for `window`: as many tasks, each
/// calling again as soon as its reply came, as an application's callers would (calls made
/// from a thread outside the runtime would each cost a wake-up of a worker and of that
/// thread, which measures the harness).
async fn cluster_pipelined(node: &Node, window: Duration) -> f64 {
    let started = Instant::now();
    let callers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut done = 0_u64;
                while started.elapsed() < window {
                    let reply = node
                        .dispatch_with(
                            call(),
                            DispatchOptions::with_timeout(Duration::from_secs(10)),
                        )
                        .await;
                    debug_assert!(reply.response().is_some_and(Response::is_success));
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for caller in callers {
        done += caller.await.unwrap();
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Allocations per remote call on both nodes, a caller and a server in this process.
fn allocations_per_call() -> f64 {
    let rt = runtime();
    let (server, caller) = rt.block_on(async {
        let server = start_server_node().await;
        let caller = join(&server.gossip_addr().to_string()).await;
        (server, caller)
    });
    let calls = || {
        let reply = rt.block_on(caller.node.dispatch(call()));
        assert!(reply.response().is_some_and(Response::is_success));
    };
    for _ in 0..1_000 {
        calls();
    }
    let per_call = allocations::per_call(ALLOCATOR, 10_000, calls);
    drop((caller, server));
    per_call
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

/// One round of sequential round trips: the floor's and the cluster's p50 and p99, in µs.
struct RoundTrips {
    p50: (f64, f64),
    p99: (f64, f64),
}

impl RoundTrips {
    fn of(floor: &Histogram<u64>, subject: &Histogram<u64>) -> Self {
        Self {
            p50: (micros(floor, 0.5), micros(subject, 0.5)),
            p99: (micros(floor, 0.99), micros(subject, 0.99)),
        }
    }
}

/// One quantile over the rounds, as the report gives it: each column's median over the rounds
/// with its range, and the median of the rounds' own ratios.
struct Quantile {
    floor: String,
    subject: String,
    ratios: String,
    ratio: f64,
}

impl Quantile {
    fn of(rounds: &[RoundTrips], pick: impl Fn(&RoundTrips) -> (f64, f64)) -> Self {
        let floors: Vec<f64> = rounds.iter().map(|round| pick(round).0).collect();
        let subjects: Vec<f64> = rounds.iter().map(|round| pick(round).1).collect();
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|round| pick(round).1 / pick(round).0)
            .collect();
        let spread = |values: &[f64], unit: &str, digits: usize| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(0.0, f64::max);
            let mid = median(values);
            format!("{mid:.digits$}{unit} ({low:.digits$}–{high:.digits$})")
        };
        Self {
            floor: spread(&floors, " µs", 1),
            subject: spread(&subjects, " µs", 1),
            ratios: spread(&ratios, "×", 2),
            ratio: median(&ratios),
        }
    }
}

struct Caller {
    node: Node,
    _cluster: Cluster,
}

async fn join(gossip: &str) -> Caller {
    let node = Node::new("caller");
    let cluster = Cluster::start(
        node.clone(),
        ClusterConfig::new("bench", SECRET.to_vec()).seeds([gossip.to_owned()]),
    )
    .await
    .unwrap();
    while !cluster
        .members()
        .iter()
        .any(|m| m.connected && m.services.contains(&"echo".to_owned()))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Caller {
        node,
        _cluster: cluster,
    }
}

fn criterion_benches(c: &mut Criterion) {
    let (_server, gossip, _) = start_server();
    let rt = runtime();
    let caller = rt.block_on(join(&gossip));
    let mut group = c.benchmark_group("remote_calls");
    group.bench_function("round_trip", |b| {
        b.iter(|| rt.block_on(caller.node.dispatch(call())))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = criterion_benches
}

/// Runs only the pipelined cluster calls or raw echo, for a profiler (see the module docs).
fn profile_only(which: &str, window: Duration) {
    let (_server, gossip, raw_addr) = start_server();
    let rt = runtime();
    let which = which.to_owned();
    let measured = rt.spawn(async move {
        let rate = match which.as_str() {
            "floor" => {
                let mut raw = Raw::connect(raw_addr, frame_sizes()).await;
                raw_pipelined(&mut raw, window).await
            }
            _ => cluster_pipelined(&join(&gossip).await.node, window).await,
        };
        println!("{which}: {rate:.0}/s");
    });
    rt.block_on(measured).unwrap();
}

/// "met", or by how many times the figure misses its target.
fn verdict(figure: f64, target: f64, at_least: bool) -> String {
    let short = if at_least {
        target / figure
    } else {
        figure / target
    };
    if short <= 1.0 {
        "met".to_owned()
    } else {
        format!("**missed** ({short:.1}× off)")
    }
}

fn main() {
    if std::env::var(CHILD).is_ok() {
        serve();
        return;
    }
    if let Some((which, window)) = support::phase() {
        profile_only(&which, window);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if support::criterion_only() {
        return;
    }
    let (rounds, sequential, window) = if support::quick() {
        (3, 500, Duration::from_millis(300))
    } else {
        (10, 2_000, Duration::from_secs(1))
    };
    let (_server, gossip, raw_addr) = start_server();
    let rt = runtime();
    let sizes = frame_sizes();
    // Measured from a task on the runtime's workers, as an application's code runs (not from
    // the thread blocked on the runtime).
    let measured = rt.spawn(async move {
        let caller = join(&gossip).await;
        let mut raw = Raw::connect(raw_addr, sizes).await;
        // Warm up both paths, then alternate rounds so both see the same CPU speed.
        raw_round_trips(&mut raw, sequential, &mut Histogram::new(3).unwrap()).await;
        cluster_round_trips(&caller.node, sequential, &mut Histogram::new(3).unwrap()).await;
        let mut rounds_seen = Vec::new();
        for _ in 0..rounds {
            let mut round_floor = Histogram::<u64>::new(3).unwrap();
            let mut round_subject = Histogram::<u64>::new(3).unwrap();
            // Call by call in turn: a round trip's latency here swings tenfold with whether
            // the cores were idle (waking an idle vCPU goes through the hypervisor), so each
            // side's calls must meet the same mix of modes as the other's.
            for _ in 0..sequential {
                raw_round_trips(&mut raw, 1, &mut round_floor).await;
                cluster_round_trips(&caller.node, 1, &mut round_subject).await;
            }
            rounds_seen.push(RoundTrips::of(&round_floor, &round_subject));
        }
        // Each round: the raw echo, then the cluster; the ratios are taken within a round.
        let (mut floors, mut clusters, mut rate_ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds.min(5) {
            let floor = raw_pipelined(&mut raw, window).await;
            let cluster = cluster_pipelined(&caller.node, window).await;
            floors.push(floor);
            clusters.push(cluster);
            rate_ratios.push(cluster / floor);
        }
        (
            rounds_seen,
            (median(&floors), median(&clusters), median(&rate_ratios)),
        )
    });
    let (round_trip, pipelined) = rt.block_on(measured).unwrap();
    drop(rt);
    let allocations = allocations_per_call();
    let p50 = Quantile::of(&round_trip, |round| round.p50);
    let p99 = Quantile::of(&round_trip, |round| round.p99);
    let ratio = p50.ratio;
    let (floor_rate, cluster_rate, rate_ratio) = pipelined;
    let mut out = String::new();
    out.push_str("## Remote calls (`switchyard-cluster`, bench `remote_calls`)\n\n");
    out.push_str(&format!(
        "`node.dispatch` of a 16-byte request to a service on another process, over one \
         authenticated cluster connection on loopback (caller and server each on a 2-worker \
         runtime; both processes share the machine's 2 cores; load average {}). Floor: frames \
         of the call's sizes ({} bytes out, {} back) over a plain tokio `TcpStream` with \
         `TCP_NODELAY` between the same two processes, echoed by a hand-written server that \
         answers every whole frame one read brought with one write. Round trips: {rounds} \
         rounds of {sequential} sequential calls each way, a raw round trip and a cluster call in \
         turn (a round trip here takes about 7 µs when the cores are busy and ten times that \
         when they were idle, waking a vCPU through the hypervisor: taken in turn, both sides \
         meet the same mix); each figure is the median over the rounds of that round's own (its \
         range over the rounds in brackets), and the ratio the median of the rounds' own \
         ratios. Pipelined: {IN_FLIGHT} calls in flight on one connection, \
         {} alternating rounds of {:.1} s; the raw client writes as many new frames, with one \
         write, as answers one read brought back (the cluster's connections write every queued \
         frame with one system call).\n\n",
        support::load_average(),
        sizes.0,
        sizes.1,
        rounds.min(5),
        window.as_secs_f64(),
    ));
    out.push_str(
        "| round trip | raw echo | cluster call | cluster / raw | target |\n|---|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| p50 | {} | {} | {} | ≤ {TARGET_P50_RATIO}×: {} |\n\
         | p99 | {} | {} | {} | |\n",
        p50.floor,
        p50.subject,
        p50.ratios,
        verdict(ratio, TARGET_P50_RATIO, false),
        p99.floor,
        p99.subject,
        p99.ratios,
    ));
    out.push_str(&format!(
        "\n| pipelined, {IN_FLIGHT} in flight | frames or calls/s | cluster / raw | target |\n\
         |---|---|---|---|\n\
         | raw echo, one write per burst | {floor_rate:.0} | | |\n\
         | cluster calls | {cluster_rate:.0} | {rate_ratio:.2}× | ≥ {TARGET_RATE_RATIO}×: {}; \
         ≥ {TARGET_RATE:.0}/s: {} |\n",
        verdict(rate_ratio, TARGET_RATE_RATIO, true),
        verdict(cluster_rate, TARGET_RATE, true),
    ));
    out.push_str(&format!(
        "\nAllocations per remote call, caller and server nodes together (both in one process, \
         counted in a pass of their own): {allocations:.1}.\n",
    ));
    out.push_str(
        "\nWhere the time goes (perf, both processes, pipelined, load average 3-5; \
         `docs/profiles/remote_calls-header.*`): the raw echo spends about 0.2 µs of CPU per \
         frame, a cluster call 5.7-6.4 µs with 0.25 context switches (`perf stat`; 6.8-7.8 µs \
         and 0.29-0.31 in the same session before this round, 13 µs and one switch two rounds \
         before). This round: the connection's reader decodes only a frame's routing header \
         and the message is decoded where it is used (the waiting call, the serving future); \
         a call is registered for cancels (abort handle, table lock) only when its handler \
         outlives its first turn; a lone remote provider skips the fail-over's boxed future and \
         candidate list; a decoded message's defaulted correlation and causation ids share the \
         id's `Arc`. Allocations per call 29 -> 21 (the last two: 25 -> 21; decoding the \
         header alone allocates nothing new). What is left: decoding the two `Message`s \
         (about 17% of the CPU: serde's generated visitor for its 15 fields, then the `Box`, \
         the id and the payload allocations), encoding and sealing each frame into the queue \
         (about 13%; AES-GCM's GMAC, sealing and opening, about 8-10%), the kernel about 15% \
         (a `send` per burst, `epoll_wait`, wake-ups), the allocator about 10% (24% two rounds \
         ago), tokio's scheduler and timers the rest. At about 6 µs of CPU a call, 250,000 calls/s \
         take 1.5 of the 2 cores, more than this shared machine gave the bench (0.7-0.9 CPUs); \
         the 0.25× ratio (about 1.2M calls/s against this floor) would take about 1.6 µs a \
         call on both cores, four times less than now: out of reach without a frame encoding \
         of its own for calls (fixed fields, no serde visitor per message) and fewer wake-ups \
         (profile it with `SWITCHYARD_BENCH_PHASE=cluster` under `perf record`).\n",
    );
    println!("\n{out}");
    support::write_section("40-cluster_remote.md", &out);
}
