//! What each fuzz target runs, so the targets in `fuzz_targets/` are one line each and the
//! seed corpus can be written and checked from a test.
//!
//! Every function takes the fuzzer's bytes and runs them through the same code the project
//! runs on bytes from outside. An `Err` is the expected outcome of most inputs; a panic, an
//! abort, a hang or a runaway allocation is the bug the fuzzer reports.

use std::path::PathBuf;

use switchyard_messaging::Message;

/// The fuzz targets, by name: the same names as the binaries in `fuzz_targets/` and the
/// folders of `corpus/`.
pub const TARGETS: &[&str] = &[
    "message",
    "cluster_frame",
    "cluster_handshake",
    "sqlite_event_rows",
    "postgres_event_rows",
];

/// A message as it arrives from another node: decoded with [`Message::from_bytes`], every
/// payload it carries decoded as a service would, and encoded again. A decoded message must
/// encode, and decode back to the same encoding.
///
/// # Panics
///
/// When a decoded message does not encode, or does not survive a second round trip: the
/// fuzzer reports it as a crash.
pub fn message(bytes: &[u8]) {
    let Ok(message) = Message::from_bytes(bytes) else {
        return;
    };
    let _ = message.request::<String>();
    let _ = message.request::<serde_json::Value>();
    let _ = message.request::<(String, u64)>();
    for payload in message.events().iter().chain(message.assigns().values()) {
        let _ = payload.decode::<serde_json::Value>();
        let _ = payload.decode::<Vec<u8>>();
        let _ = payload.to_string();
    }
    if let Some(response) = message.response() {
        let _ = response.payload().map(|payload| payload.decode::<String>());
    }
    let _ = message.log_fields().trace_context();
    let _ = format!("{message:?}");
    let encoded = message
        .to_bytes()
        .unwrap_or_else(|error| panic!("a decoded message does not encode: {error}"));
    let again = Message::from_bytes(&encoded)
        .unwrap_or_else(|error| panic!("a re-encoded message does not decode: {error}"));
    assert_eq!(
        again.to_bytes().ok().as_deref(),
        Some(encoded.as_slice()),
        "a message changes on its second round trip"
    );
}

/// A stream of frames from an authenticated peer (see
/// [`switchyard_cluster::fuzzing::read_frames`]).
pub fn cluster_frame(bytes: &[u8]) {
    let _ = switchyard_cluster::fuzzing::read_frames(bytes);
}

/// The handshake against a peer that sends the input after its first byte; the first byte's
/// low bit says whether this node dials (1) or listens (0).
pub fn cluster_handshake(bytes: &[u8]) {
    if let Some((&role, peer_bytes)) = bytes.split_first() {
        let _ = switchyard_cluster::fuzzing::handshake(peer_bytes, role & 1 == 1);
    }
}

thread_local! {
    static SQLITE: Option<switchyard_sqlite::fuzzing::EventRowDecoder> =
        switchyard_sqlite::fuzzing::EventRowDecoder::new().ok();
}

/// SQLite rows of fuzzed values read as events (see
/// [`switchyard_sqlite::fuzzing::EventRowDecoder`]).
///
/// # Panics
///
/// When SQLite cannot open an in-memory database: nothing could be fuzzed.
pub fn sqlite_event_rows(bytes: &[u8]) {
    SQLITE.with(|decoder| {
        let decoder = decoder
            .as_ref()
            .unwrap_or_else(|| panic!("SQLite cannot open an in-memory database"));
        let _ = decoder.decode(bytes);
    });
}

/// PostgreSQL rows of fuzzed column bytes read as events (see
/// [`switchyard_postgres::fuzzing::decode_event_rows`]).
pub fn postgres_event_rows(bytes: &[u8]) {
    let _ = switchyard_postgres::fuzzing::decode_event_rows(bytes);
}

/// Runs the target named `target` on `bytes`; `false` for an unknown name.
pub fn run(target: &str, bytes: &[u8]) -> bool {
    match target {
        "message" => message(bytes),
        "cluster_frame" => cluster_frame(bytes),
        "cluster_handshake" => cluster_handshake(bytes),
        "sqlite_event_rows" => sqlite_event_rows(bytes),
        "postgres_event_rows" => postgres_event_rows(bytes),
        _ => return false,
    }
    true
}

/// The seed inputs of `target`, made from real encoded values: `(file name, bytes)`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |seeds: Vec<(&str, Vec<u8>)>| {
        seeds
            .into_iter()
            .map(|(name, bytes)| (format!("seed-{name}"), bytes))
            .collect()
    };
    match target {
        "message" => named(message_seeds()),
        "cluster_frame" => {
            let frames = switchyard_cluster::fuzzing::seed_frames();
            let mut seeds = frames.clone();
            let all: Vec<u8> = frames.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
            seeds.push(("all_kinds", all));
            named(seeds)
        }
        "cluster_handshake" => switchyard_cluster::fuzzing::seed_handshakes()
            .into_iter()
            .flat_map(|(name, bytes)| {
                [("listener", 0_u8), ("dialer", 1)].map(|(role, bit)| {
                    let mut input = vec![bit];
                    input.extend_from_slice(&bytes);
                    (format!("seed-{name}-{role}"), input)
                })
            })
            .collect(),
        "sqlite_event_rows" => named(switchyard_sqlite::fuzzing::seed_event_rows()),
        "postgres_event_rows" => named(switchyard_postgres::fuzzing::seed_event_rows()),
        _ => Vec::new(),
    }
}

fn message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let plain = Message::new("accounts.deposit").with_request(&("account-1", 250_u64));
    let full = Message::new("accounts.deposit")
        .with_id("message-1")
        .with_correlation_id("correlation-1")
        .with_payload(
            switchyard_messaging::Payload::from_json(r#"{"amount":250,"note":"rent"}"#)
                .unwrap_or_else(|_| switchyard_messaging::Payload::text("rent")),
        )
        .assign("tenant", &"acme")
        .with_log_field("user", "ada")
        .with_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .add_event(&("Deposited", 250_u64))
        .with_aggregate_id("account-1");
    let replied = full.clone().ok_with(&"done");
    let failed = plain.clone().error("insufficient funds");
    [
        ("plain", plain),
        ("full", full),
        ("replied", replied),
        ("failed", failed),
    ]
    .into_iter()
    .filter_map(|(name, message)| Some((name, message.to_bytes().ok()?)))
    .collect()
}

/// The committed corpus folder of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}
