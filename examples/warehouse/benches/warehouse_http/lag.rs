//! The product list's lag under load (mode `persisted-async`): the list is sampled on a
//! connection of its own every [`INTERVAL`] while the clients send commands. Each sample gives
//! the position of the last event the list has seen and the store's head; its lag in time is how
//! long before the sample the store first showed the list's position (to within the sampling
//! interval), and its lag in positions their difference (a count of events on SQLite, whose
//! positions are dense; not on PostgreSQL, whose positions carry transaction ids).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::load::{self, Connection};

/// How often the list is sampled: often enough to see lags of a few milliseconds, rarely
/// enough to add nothing measurable to the load (100 reads/s beside thousands of commands).
pub(crate) const INTERVAL: Duration = Duration::from_millis(10);

/// One reading of the list's progress.
pub(crate) struct Sample {
    at: Instant,
    position: u64,
    head: u64,
}

#[derive(Deserialize)]
struct Progress {
    position: u64,
    head: u64,
}

/// Samples the list at `address` until `until`.
pub(crate) async fn sample(address: SocketAddr, until: Instant) -> Vec<Sample> {
    let mut connection = Connection::open(address).await;
    let request = load::request("GET", "/warehouse/products", "");
    let mut samples = Vec::new();
    while Instant::now() < until {
        let (status, body) = connection.send(&request).await;
        assert_eq!(status, 200, "the product list: {body:?}");
        let progress: Progress = serde_json::from_slice(&body).expect("the list's JSON");
        samples.push(Sample {
            at: Instant::now(),
            position: progress.position,
            head: progress.head,
        });
        tokio::time::sleep(INTERVAL).await;
    }
    samples
}

/// The lags of `samples`: in positions, and in microseconds.
pub(crate) fn lags(samples: &[Sample]) -> (Histogram<u64>, Histogram<u64>) {
    let mut events = load::histogram();
    let mut micros = load::histogram();
    for (index, sample) in samples.iter().enumerate() {
        events.saturating_record(sample.head.saturating_sub(sample.position));
        let caught_up_with = samples[..=index]
            .iter()
            .find(|earlier| earlier.head >= sample.position)
            .map_or(sample.at, |earlier| earlier.at);
        let lag = sample.at.duration_since(caught_up_with).as_micros();
        micros.saturating_record(lag.try_into().unwrap_or(u64::MAX));
    }
    (events, micros)
}
