//! Calls between two processes on loopback over an authenticated cluster connection, beside a
//! raw tokio TCP echo of frames of the same sizes measured in the same run.
//!
//! - Round trip: one caller, one call at a time; p50 and p99. Floor: a length-delimited echo
//!   over a plain tokio `TcpStream` (`TCP_NODELAY`) to the same other process.
//! - Pipelined: 64 calls in flight; calls per second. Floor: the raw echo with 64 frames in
//!   flight on one connection, the client flushing once it has no credit left; two floors, the
//!   echo server flushing each answer, and flushing once per burst of requests already
//!   received (as the cluster writes every queued frame with one system call).
//!
//! The bench starts itself again as the serving process. Run with `cargo xtask bench` (which
//! writes `docs/benchmarks.md`) or `cargo bench -p switchyard-cluster --bench remote_calls`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use futures::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use switchyard_cluster::{Cluster, ClusterConfig};
use switchyard_messaging::{DispatchOptions, Message, Node, Response, Router, codec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use switchyard_bench_support::{self as support, median, runtime};

const CHILD: &str = "SWITCHYARD_BENCH_CLUSTER_CHILD";
const SECRET: &[u8] = b"benchmark secret, thirty-two byt";
const PAYLOAD: [u8; 16] = [7; 16];
const IN_FLIGHT: usize = 64;
/// The raw echo server's modes: flush each answer, or once per burst of requests.
const EACH: u8 = 0;
const BATCH: u8 = 1;

async fn echo(msg: Message) -> Message {
    let payload: Vec<u8> = msg.request().unwrap();
    msg.ok_with(&payload)
}

fn call() -> Message {
    Message::new("echo").with_request(&PAYLOAD.to_vec())
}

/// The serving process: a node offering `echo`, and a raw echo server.
fn serve() {
    let rt = runtime();
    rt.block_on(async {
        let node = Node::new("server");
        node.register(
            Router::new("bench")
                .service("echo", echo)
                .authorize(|_| Ok(())),
        )
        .unwrap();
        let cluster = Cluster::start(node, ClusterConfig::new("bench", SECRET.to_vec()))
            .await
            .unwrap();
        let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_addr = raw.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = raw.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let (mut sink, mut frames) =
                        Framed::new(stream, LengthDelimitedCodec::new()).split();
                    let mut next = frames.next().await;
                    while let Some(Ok(frame)) = next {
                        // Answer with a frame as long as the cluster's reply.
                        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
                        let batch = frame[4] == BATCH;
                        if sink.feed(Bytes::from(vec![1_u8; len])).await.is_err() {
                            break;
                        }
                        // Batching, flush once no further request has already arrived, as the
                        // cluster writes every reply queued meanwhile with one system call.
                        // Otherwise flush each answer.
                        next = match frames.next().now_or_never() {
                            Some(next) if batch => next,
                            ready => {
                                if sink.flush().await.is_err() {
                                    break;
                                }
                                match ready {
                                    Some(next) => next,
                                    None => frames.next().await,
                                }
                            }
                        };
                    }
                });
            }
        });
        println!("ready {} {}", cluster.gossip_addr(), raw_addr);
        std::future::pending::<()>().await;
    });
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

type Raw = Framed<TcpStream, LengthDelimitedCodec>;

async fn raw_connection(addr: SocketAddr) -> Raw {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    Framed::new(stream, LengthDelimitedCodec::new())
}

/// The request frame tells the echo server how long its answer must be, and whether it
/// batches its answers (`BATCH`) or flushes each.
fn raw_request(sizes: (usize, usize), mode: u8) -> Bytes {
    let mut frame = vec![0_u8; sizes.0];
    frame[..4].copy_from_slice(&(sizes.1 as u32).to_be_bytes());
    frame[4] = mode;
    Bytes::from(frame)
}

async fn raw_round_trips(
    raw: &mut Raw,
    request: &Bytes,
    count: usize,
    histogram: &mut Histogram<u64>,
) {
    for _ in 0..count {
        let started = Instant::now();
        raw.send(request.clone()).await.unwrap();
        raw.next().await.unwrap().unwrap();
        histogram
            .record(started.elapsed().as_nanos() as u64)
            .unwrap();
    }
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

/// Calls per second with `IN_FLIGHT` calls outstanding, for `window`.
async fn cluster_pipelined(node: &Node, window: Duration) -> f64 {
    let started = Instant::now();
    let mut done = 0_u64;
    let mut running = futures::stream::FuturesUnordered::new();
    while started.elapsed() < window {
        while running.len() < IN_FLIGHT {
            let node = node.clone();
            running.push(tokio::spawn(async move {
                node.dispatch_with(
                    call(),
                    DispatchOptions::with_timeout(Duration::from_secs(10)),
                )
                .await
            }));
        }
        let reply = running.next().await.unwrap().unwrap();
        debug_assert!(reply.response().is_some_and(Response::is_success));
        done += 1;
    }
    while let Some(reply) = running.next().await {
        reply.unwrap();
        done += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Frames per second echoed with `IN_FLIGHT` outstanding on one raw connection.
async fn raw_pipelined(addr: SocketAddr, request: &Bytes, window: Duration) -> f64 {
    let (mut sink, mut frames) = raw_connection(addr).await.split();
    let credit = Arc::new(Semaphore::new(IN_FLIGHT));
    let reader = {
        let credit = credit.clone();
        tokio::spawn(async move {
            let mut received = 0_u64;
            while let Some(Ok(_)) = frames.next().await {
                received += 1;
                credit.add_permits(1);
            }
            received
        })
    };
    let started = Instant::now();
    let mut sent = 0_u64;
    while started.elapsed() < window {
        credit.acquire().await.unwrap().forget();
        sink.feed(request.clone()).await.unwrap();
        sent += 1;
        // Flush once nothing more may be sent, as the cluster's writer flushes per burst.
        if credit.available_permits() == 0 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    // Wait for every answer, then close so the reader ends.
    let _all_back = credit.acquire_many(IN_FLIGHT as u32).await.unwrap();
    let elapsed = started.elapsed();
    drop(sink);
    reader.abort();
    sent as f64 / elapsed.as_secs_f64()
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
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
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = criterion_benches
}

fn main() {
    if std::env::var(CHILD).is_ok() {
        serve();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|arg| arg == "--test" || arg == "--list" || arg == "--profile-time") {
        return;
    }
    let (_server, gossip, raw_addr) = start_server();
    let rt = runtime();
    let sizes = frame_sizes();
    let request = raw_request(sizes, EACH);
    let batched_request = raw_request(sizes, BATCH);
    let (round_trip, pipelined) = rt.block_on(async {
        let caller = join(&gossip).await;
        let mut raw = raw_connection(raw_addr).await;
        let mut floor = Histogram::<u64>::new(3).unwrap();
        let mut subject = Histogram::<u64>::new(3).unwrap();
        // Warm up both paths, then alternate rounds so both see the same CPU speed.
        raw_round_trips(&mut raw, &request, 2_000, &mut Histogram::new(3).unwrap()).await;
        cluster_round_trips(&caller.node, 2_000, &mut Histogram::new(3).unwrap()).await;
        let mut ratios = Vec::new();
        for _ in 0..10 {
            let mut round_floor = Histogram::<u64>::new(3).unwrap();
            let mut round_subject = Histogram::<u64>::new(3).unwrap();
            raw_round_trips(&mut raw, &request, 2_000, &mut round_floor).await;
            cluster_round_trips(&caller.node, 2_000, &mut round_subject).await;
            ratios.push(micros(&round_subject, 0.5) / micros(&round_floor, 0.5));
            floor.add(&round_floor).unwrap();
            subject.add(&round_subject).unwrap();
        }
        // Each round: the echo flushing each answer, the echo batching its answers, the
        // cluster; the ratios are taken within a round.
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut rate_ratios = [Vec::new(), Vec::new()];
        for _ in 0..5 {
            let each = raw_pipelined(raw_addr, &request, Duration::from_secs(1)).await;
            let batched = raw_pipelined(raw_addr, &batched_request, Duration::from_secs(1)).await;
            let cluster = cluster_pipelined(&caller.node, Duration::from_secs(1)).await;
            for (rate, value) in rates.iter_mut().zip([each, batched, cluster]) {
                rate.push(value);
            }
            rate_ratios[0].push(cluster / each);
            rate_ratios[1].push(cluster / batched);
        }
        (
            (floor, subject, median(&ratios)),
            (rates.map(|r| median(&r)), rate_ratios.map(|r| median(&r))),
        )
    });
    let (floor, subject, ratio) = round_trip;
    let mut out = String::new();
    out.push_str("## Remote calls (`switchyard-cluster`, bench `remote_calls`)\n\n");
    out.push_str(&format!(
        "`node.dispatch` of a 16-byte request to a service on another process, over one \
         authenticated cluster connection on loopback (caller and server each on a 2-worker \
         runtime; both processes share the machine's 2 cores). Floor: a length-delimited echo \
         over a plain tokio `TcpStream` with `TCP_NODELAY` between the same two processes, \
         frames of the call's sizes ({} bytes out, {} back). Round trips: 10 alternating \
         rounds of 2,000 sequential calls; the ratio is the median of the rounds' p50 ratios. \
         Pipelined: {IN_FLIGHT} calls in flight, 5 alternating rounds of 1 s, against two \
         floors: the echo server flushing each answer, and flushing once per burst of \
         requests already received (as the cluster's connections write every queued frame \
         with one system call); the raw client flushes once it has no credit left in both.\n\n",
        sizes.0, sizes.1
    ));
    out.push_str("| round trip | raw echo | cluster call | cluster / raw |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| p50 | {:.1} µs | {:.1} µs | {ratio:.2}× |\n| p99 | {:.1} µs | {:.1} µs | {:.2}× |\n",
        micros(&floor, 0.5),
        micros(&subject, 0.5),
        micros(&floor, 0.99),
        micros(&subject, 0.99),
        micros(&subject, 0.99) / micros(&floor, 0.99),
    ));
    let ([each, batched, cluster], [to_each, to_batched]) = pipelined;
    out.push_str(&format!(
        "\n| pipelined, {IN_FLIGHT} in flight | frames or calls/s | cluster / it |\n|---|---|---|\n\
         | raw echo, flush per answer | {each:.0} | {to_each:.2} |\n\
         | raw echo, flush per burst | {batched:.0} | {to_batched:.2} |\n\
         | cluster calls | {cluster:.0} | |\n",
    ));
    out.push_str(
        "\nTargets: p50 ≤ 2× the raw echo round trip; ≥ 150,000 calls/s pipelined on 2 cores.\n",
    );
    println!("\n{out}");
    support::write_section("40-cluster_remote.md", &out);
}
