//! Reading a stream: one statement for the whole read, handed out in pages; a read whose
//! connection breaks part-way starts again where it stopped, and hands out every event once.

use std::time::Duration;

use futures::StreamExt;
use switchyard_aggregates::store::{EventAppender, EventReader, ExpectedVersion, NewEvent};

use crate::support::{meta, raw_client, store, url};

/// Events large enough that the read outgrows the socket's buffers: the server still sends
/// when the first page is handed out.
const EVENTS: usize = 2_000;
const EVENT_BYTES: usize = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cut_off_part_way_starts_again_where_it_stopped() {
    let store = store().await;
    let mut expected = ExpectedVersion::NoStream;
    for chunk in 0..EVENTS / 500 {
        let events = (0..500)
            .map(|i| NewEvent {
                event_type: "big".into(),
                schema_version: 1,
                data: vec![(chunk * 500 + i) as u8; EVENT_BYTES].into(),
            })
            .collect();
        let version = store
            .append("big", expected, events, meta(&format!("chunk-{chunk}")))
            .await
            .unwrap();
        expected = ExpectedVersion::Exactly(version);
    }
    let mut pages = store.read_stream("big", 0, 100);
    let mut versions: Vec<i64> = pages
        .next()
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    // The statement is still sending: end its session.
    let observer = raw_client(&url(), store.schema()).await;
    let mut ended = false;
    for _ in 0..500 {
        let rows = observer
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE '-- A stream''s visible events%'",
                &[],
            )
            .await
            .unwrap();
        if !rows.is_empty() {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ended, "the read's statement had already finished");
    while let Some(page) = pages.next().await {
        versions.extend(page.unwrap().iter().map(|e| e.version));
    }
    let all: Vec<i64> = (0..EVENTS as i64).collect();
    assert_eq!(versions, all, "every event once, in order");
}
