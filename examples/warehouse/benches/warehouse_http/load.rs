//! The load: concurrent HTTP/1.1 clients, each on one keep-alive connection of its own, sending
//! one request after another for a given time and timing each from its first byte sent to the
//! last byte of its response.
//!
//! The client is as lean as `wrk`: each request is written as prepared bytes and each response
//! read into a reused buffer and parsed with `httparse`, one task per connection, so the floor
//! measures the server rather than the harness (a hyper client reached about two thirds of
//! `wrk`'s rate against the same floor server here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The requests a client sends, as the bytes of an HTTP/1.1 request: its `n`th request, for
/// client number `client`.
pub(crate) type Requests = Arc<dyn Fn(usize, u64) -> Bytes + Send + Sync>;

/// What a load measured.
pub(crate) struct Measured {
    /// Responses per second, all clients together.
    pub(crate) rate: f64,
    /// Latency of every response, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Responses whose status was not a success (each is also counted in `rate`).
    pub(crate) failures: u64,
}

/// A histogram of latencies in microseconds, from 1 µs to a minute, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// The bytes of a request: `method path` with a JSON body, keep-alive.
pub(crate) fn request(method: &str, path: &str, json: &str) -> Bytes {
    Bytes::from(format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{json}",
        json.len()
    ))
}

/// Runs `clients` clients against `address` for `length`, each sending `requests`; the
/// clients run as tasks of the current runtime.
pub(crate) async fn run(
    address: SocketAddr,
    clients: usize,
    length: Duration,
    requests: Requests,
) -> Measured {
    // Connections are opened before the clock starts, as a pool of keep-alive clients would be.
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = TcpStream::connect(address)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        streams.push(stream);
    }
    let started = Instant::now();
    let until = started + length;
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(client, mut stream)| {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let mut failures = 0;
                let mut buffer = Vec::with_capacity(16 * 1024);
                let mut n = 0;
                while Instant::now() < until {
                    let request = requests(client, n);
                    let sent = Instant::now();
                    stream.write_all(&request).await.expect("send a request");
                    let (status, _) = read_response(&mut stream, &mut buffer).await;
                    let micros = sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
                    latency.saturating_record(micros);
                    failures += u64::from(!(200..300).contains(&status));
                    n += 1;
                }
                (latency, failures)
            })
        })
        .collect();
    let mut measured = Measured {
        rate: 0.0,
        latency: histogram(),
        failures: 0,
    };
    for task in tasks {
        let (latency, failures) = task.await.expect("a client task");
        measured
            .latency
            .add(latency)
            .expect("same histogram bounds");
        measured.failures += failures;
    }
    measured.rate = measured.latency.len() as f64 / started.elapsed().as_secs_f64();
    measured
}

/// A client of its own, for requests made outside a load (set-up, samples): one keep-alive
/// connection, one request at a time.
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    /// Connects to `address`.
    pub(crate) async fn open(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            stream,
            buffer: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `request` and gives the response's status and body.
    pub(crate) async fn send(&mut self, request: &[u8]) -> (u16, Bytes) {
        self.stream
            .write_all(request)
            .await
            .expect("send a request");
        let (status, body) = read_response(&mut self.stream, &mut self.buffer).await;
        (status, Bytes::copy_from_slice(&self.buffer[body]))
    }
}

/// Reads one response (its head and its `content-length` bytes of body) into `buffer`; gives its
/// status and where its body is in `buffer`.
async fn read_response(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> (u16, std::ops::Range<usize>) {
    buffer.clear();
    loop {
        if stream.read_buf(buffer).await.expect("read a response") == 0 {
            panic!("the server closed a keep-alive connection");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(buffer).expect("an HTTP response")
        else {
            continue;
        };
        let length = response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            .and_then(|header| {
                std::str::from_utf8(header.value)
                    .ok()?
                    .parse::<usize>()
                    .ok()
            })
            .expect("a response with a content-length");
        if buffer.len() >= head + length {
            return (response.code.unwrap_or(0), head..head + length);
        }
    }
}
