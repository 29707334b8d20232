//! HTTP commands per second and their latency on the warehouse (`examples/warehouse`), in each
//! mode on each store, beside a floor measured in the same run.
//!
//! - Load: 64 clients, each on one keep-alive HTTP/1.1 connection of its own, each sending
//!   `POST /warehouse/products/{sku}/increase` then `.../decrease` (`{"quantity": 1}`) on a
//!   product of its own, one request after another, for a fixed time. The clients run on one
//!   thread of their own (see `load`); the server on the benches' 2-worker runtime.
//! - Floor: the same axum server on the same runtime answering the same routes with a static
//!   JSON body of the app's own response's size (see `floor`): what HTTP alone costs here.
//! - In mode `persisted-async`, the product list's lag behind the store while under that load
//!   (see `lag`).
//!
//! Run with `cargo xtask bench` (which writes `docs/benchmarks.md`) or
//! `cargo bench -p warehouse --bench warehouse_http` (`SWITCHYARD_BENCH_QUICK=1` for a short
//! run). PostgreSQL rows use `SWITCHYARD_TEST_DATABASE_URL`, else a throwaway server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Benches fail loudly.

mod floor;
mod harness_check;
mod lag;
mod load;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use switchyard_bench_support::{self as support, alternate, median, target_dir};
use tokio::runtime::Runtime;
use warehouse::{Config, Database, Mode};

/// Concurrent clients, each on a keep-alive connection of its own (the issue's figure).
const CLIENTS: usize = 64;

/// A mode on a store.
#[derive(Clone, Copy)]
struct Target {
    mode: Mode,
    store: Store,
}

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    Sqlite,
    Postgres,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

const TARGETS: [Target; 5] = [
    Target {
        mode: Mode::MemorySync,
        store: Store::Memory,
    },
    Target {
        mode: Mode::PersistedSync,
        store: Store::Sqlite,
    },
    Target {
        mode: Mode::PersistedAsync,
        store: Store::Sqlite,
    },
    Target {
        mode: Mode::PersistedSync,
        store: Store::Postgres,
    },
    Target {
        mode: Mode::PersistedAsync,
        store: Store::Postgres,
    },
];

/// A fresh database for `target`.
fn database(target: Target) -> Database {
    match target.store {
        Store::Memory => Database::Memory,
        Store::Sqlite => {
            let dir = target_dir().join("switchyard-bench-scratch");
            std::fs::create_dir_all(&dir).unwrap();
            let database =
                Database::Sqlite(dir.join(format!("warehouse-{}.db", target.mode.name())));
            remove_files(&database);
            database
        }
        Store::Postgres => Database::Postgres {
            url: switchyard_postgres::test_server::shared_url().unwrap(),
            schema: format!(
                "warehouse_bench_{}_{}",
                std::process::id(),
                target.mode.name().replace('-', "_")
            ),
        },
    }
}

/// Removes a SQLite database's files (tens of megabytes after a run): disk is shared.
fn remove_files(database: &Database) {
    if let Database::Sqlite(path) = database {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

/// What one target's rounds measured.
struct Figures {
    rates: support::Rounds,
    floor_latency: Histogram<u64>,
    latency: Histogram<u64>,
    failures: u64,
    lag: Option<(Histogram<u64>, Histogram<u64>)>,
}

/// Runs `rounds` alternating rounds of floor and warehouse for `target`.
fn measure(
    server: &Runtime,
    clients: &Runtime,
    target: Target,
    rounds: usize,
    length: Duration,
) -> Figures {
    let database = database(target);
    let mut config = Config::new(target.mode, database.clone());
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let (address, app) = server.block_on(warehouse::serve(config)).unwrap();

    // One product per client, so the figures measure the path, not conflicts between clients.
    let requests: Vec<[Bytes; 2]> = (0..CLIENTS)
        .map(|client| {
            ["increase", "decrease"].map(|change| {
                load::request(
                    "POST",
                    &format!("/warehouse/products/bench-{client}/{change}"),
                    r#"{"quantity":1}"#,
                )
            })
        })
        .collect();
    let answer = clients.block_on(async {
        let mut connection = load::Connection::open(address).await;
        for client in 0..CLIENTS {
            let create = load::request(
                "POST",
                "/warehouse/products",
                &format!(r#"{{"sku":"bench-{client}","name":"Bench product {client}"}}"#),
            );
            let (status, body) = connection.send(&create).await;
            assert!(
                (200..300).contains(&status),
                "create a product: {status} {body:?}"
            );
        }
        // A typical answer, for the floor to send: an increase's, then back to zero.
        let (_, answer) = connection.send(&requests[0][0]).await;
        connection.send(&requests[0][1]).await;
        answer
    });
    let floor = server.block_on(floor::serve(answer));
    let requests = Arc::new(requests);
    let load = |address: SocketAddr| {
        let requests = requests.clone();
        let send: load::Requests =
            Arc::new(move |client, n| requests[client][(n % 2) as usize].clone());
        load::run(address, CLIENTS, length, send)
    };

    let mut figures = Figures {
        rates: support::Rounds::default(),
        floor_latency: load::histogram(),
        latency: load::histogram(),
        failures: 0,
        lag: (target.mode == Mode::PersistedAsync).then(|| (load::histogram(), load::histogram())),
    };
    let mut floor_rounds = Vec::new();
    let mut app_rounds = Vec::new();
    let rates = alternate(
        rounds,
        || {
            let measured = clients.block_on(load(floor));
            let rate = measured.rate;
            floor_rounds.push(measured);
            rate
        },
        || {
            let (measured, samples) = clients.block_on(async {
                let until = Instant::now() + length;
                let sampler = (target.mode == Mode::PersistedAsync)
                    .then(|| tokio::spawn(lag::sample(address, until)));
                let measured = load(address).await;
                let samples = match sampler {
                    Some(sampler) => sampler.await.unwrap(),
                    None => Vec::new(),
                };
                (measured, samples)
            });
            let rate = measured.rate;
            app_rounds.push((measured, samples));
            rate
        },
    );
    // The warm-up rounds are left out of the latencies, as they are of the rates.
    for measured in floor_rounds.into_iter().skip(1) {
        figures.floor_latency.add(measured.latency).unwrap();
    }
    for (measured, samples) in app_rounds.into_iter().skip(1) {
        figures.latency.add(measured.latency).unwrap();
        figures.failures += measured.failures;
        if let Some((events, micros)) = &mut figures.lag {
            let (round_events, round_micros) = lag::lags(&samples);
            events.add(round_events).unwrap();
            micros.add(round_micros).unwrap();
        }
    }
    figures.rates = rates;
    server
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), app.shutdown()).await })
        .expect("the warehouse stops")
        .unwrap();
    remove_files(&database);
    figures
}

/// Runs `wrk` and this bench's clients in turn against a floor server (see `harness_check`);
/// gives the report's line.
fn check_harness(server: &Runtime, clients: &Runtime, rounds: usize, length: Duration) -> String {
    let floor = server.block_on(floor::serve(Bytes::from_static(
        br#"{"version":1,"position":2,"quantity":1}"#,
    )));
    if harness_check::wrk_rate(floor, CLIENTS, Duration::from_secs(1)).is_none() {
        return "\nHarness check: `wrk` is not installed (`apt-get install wrk`), so this run did \
                not compare its clients with it.\n"
            .into();
    }
    let request = load::request(
        "POST",
        "/warehouse/products/bench-0/increase",
        r#"{"quantity":1}"#,
    );
    let rates = alternate(
        rounds,
        || harness_check::wrk_rate(floor, CLIENTS, length).unwrap_or(0.0),
        || {
            let request = request.clone();
            let send: load::Requests = Arc::new(move |_, _| request.clone());
            clients
                .block_on(load::run(floor, CLIENTS, length, send))
                .rate
        },
    );
    format!(
        "\nHarness check, against the floor server: `wrk -t1 -c{CLIENTS}` (the same POST) {:.0} \
         requests/s, this bench's clients {:.0}: {:.2} of `wrk` (medians of {rounds} alternating \
         rounds).\n",
        median(&rates.floor),
        median(&rates.subject),
        rates.ratio(),
    )
}

fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1_000.0)
}

fn main() {
    if support::criterion_only() {
        return;
    }
    let quick = support::quick();
    let (rounds, length) = if quick {
        (1, Duration::from_millis(500))
    } else {
        (5, Duration::from_secs(3))
    };
    let server = support::runtime();
    // The clients on a thread of their own, as a load generator in another process would be.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let load_before = support::load_average();
    let mut out = String::new();
    out.push_str("## Warehouse over HTTP (`examples/warehouse`, bench `warehouse_http`)\n\n");
    out.push_str(&format!(
        "{CLIENTS} clients, each on one keep-alive HTTP/1.1 connection of its own, send \
         `POST /warehouse/products/{{sku}}/increase` and `.../decrease` (`{{\"quantity\": 1}}`) \
         in turn on a product of their own, one request after another, from one thread of \
         their own (prepared request bytes, responses parsed with httparse: as lean as `wrk`, \
         which reached the same floor rate here). The warehouse serves in-process on the \
         benches' 2-worker runtime, SQLite on a file in `target/` (WAL, synchronous `Full`), \
         PostgreSQL on a throwaway local server (fsync on). Floor: the same axum server on the \
         same runtime answering the same routes with a static JSON body of the warehouse's own \
         answer's size, touching no store. {} alternating rounds of {:.1} s after a warm-up \
         round of each; rates are medians, the ratio is taken round by round, latencies are \
         over all measured rounds. In mode `persisted-async` the product list is sampled every \
         {} ms during the warehouse's rounds: its lag is how long before the sample the store \
         first reached the list's position (to within the sampling interval), and on SQLite, \
         whose positions count events, also the store's head minus the list's position. The issue sets no figure to \
         reach: the ratio to the floor is the figure to follow.\n\n",
        rounds,
        length.as_secs_f64(),
        lag::INTERVAL.as_millis(),
    ));
    out.push_str(
        "| mode | store | floor commands/s | warehouse commands/s | warehouse / floor | floor p50 / p99 ms | warehouse p50 / p99 ms | list lag p99 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let check = check_harness(&server, &clients, rounds, length);
    for target in TARGETS {
        let figures = measure(&server, &clients, target, rounds, length);
        let lag = match &figures.lag {
            // SQLite numbers events 1, 2, 3...: the distance between positions counts events.
            // PostgreSQL's positions carry the writing transaction's id, so they do not.
            Some((events, micros)) if target.store == Store::Sqlite => format!(
                "{} ms ({} events)",
                millis(micros.value_at_quantile(0.99)),
                events.value_at_quantile(0.99),
            ),
            Some((_, micros)) => format!("{} ms", millis(micros.value_at_quantile(0.99))),
            None => "none: updated before each answer".into(),
        };
        let failures = if figures.failures > 0 {
            format!(" ({} answers not 2xx)", figures.failures)
        } else {
            String::new()
        };
        let row = format!(
            "| {} | {} | {:.0} | {:.0}{failures} | {:.3} | {} / {} | {} / {} | {lag} |\n",
            target.mode.name(),
            target.store.name(),
            median(&figures.rates.floor),
            median(&figures.rates.subject),
            figures.rates.ratio(),
            millis(figures.floor_latency.value_at_quantile(0.5)),
            millis(figures.floor_latency.value_at_quantile(0.99)),
            millis(figures.latency.value_at_quantile(0.5)),
            millis(figures.latency.value_at_quantile(0.99)),
        );
        eprint!("{row}");
        out.push_str(&row);
    }
    out.push_str(&check);
    out.push_str(&format!(
        "\nLoad average (1, 5, 15 min) before: {load_before}; after: {}.\n",
        support::load_average()
    ));
    if quick {
        out.push_str("\nQuick run (`SWITCHYARD_BENCH_QUICK`): these figures say little.\n");
    }
    support::write_section("70-warehouse-http.md", &out);
    println!("{out}");
}
