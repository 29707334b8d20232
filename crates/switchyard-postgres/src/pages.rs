//! Reading a stream: one statement for the whole read, its rows handed out in pages as they
//! arrive.
//!
//! A page per statement cost a round trip, a pool checkout and a plan per page (20 for a
//! 10,000-event stream in pages of 512), one after another: a cold load waited on the server
//! 20 times. One statement streams every row instead; the driver stops reading the socket while
//! the caller holds a page, so the rows wait in the server's send buffer, not in memory here. The
//! read holds one pooled connection until its last row, and sees the stream as of one snapshot.

use std::pin::Pin;

use deadpool::managed::Object;
use futures::stream::{self, BoxStream, StreamExt};
use switchyard_aggregates::store::{RecordedEvent, StoreError};
use tokio_postgres::RowStream;
use tokio_postgres::types::ToSql;

use crate::db::Database;
use crate::error::Failure;
use crate::pool::Manager;
use crate::rows::Decoder;

/// How many times a read whose connection broke under it starts again (from the first
/// version it has not handed out) before the caller hears the failure.
const RESTARTS: usize = 3;

/// The most events a page's buffer holds before any arrive: a large page size asks for no
/// more memory than its events take.
const PAGE_CAPACITY: usize = 1_024;

/// The stream `stream`'s visible events from `from_version` on, in pages of `page_size`.
pub(crate) fn read_stream<'a>(
    database: &'a Database,
    stream: &'a str,
    from_version: i64,
    page_size: usize,
) -> BoxStream<'a, Result<Vec<RecordedEvent>, StoreError>> {
    let pages = Pages {
        database,
        stream,
        page_size: page_size.max(1),
        next: from_version.max(0),
        rows: None,
        decoder: Decoder::at(0),
        done: false,
    };
    stream::unfold(pages, |mut pages| async move {
        let page = pages.page().await?;
        Some((page, pages))
    })
    .boxed()
}

/// The statement's rows and the pooled connection they arrive on.
struct Rows {
    rows: Pin<Box<RowStream>>,
    _conn: Object<Manager>,
}

/// A read under way.
struct Pages<'a> {
    database: &'a Database,
    stream: &'a str,
    page_size: usize,
    /// The first version not handed out yet.
    next: i64,
    /// `None` before the first page, after a broken connection, and once every row arrived.
    rows: Option<Rows>,
    decoder: Decoder,
    done: bool,
}

/// Why a page could not be filled.
enum Stop {
    /// The connection broke or the server refused (a broken connection is a
    /// [`Failure::Retry`]: the read may start again).
    Failed(Failure),
    /// A row did not decode.
    Corrupt(StoreError),
}

impl Pages<'_> {
    /// The next page; `None` once every event was handed out or the read failed.
    async fn page(&mut self) -> Option<Result<Vec<RecordedEvent>, StoreError>> {
        let mut restarts = 0;
        loop {
            match self.fill().await {
                Ok(page) if page.is_empty() => return None,
                Ok(page) => {
                    if let Some(last) = page.last() {
                        self.next = last.version + 1;
                    }
                    return Some(Ok(page));
                }
                Err(Stop::Failed(Failure::Retry(_))) if restarts < RESTARTS => restarts += 1,
                Err(stop) => {
                    self.done = true;
                    self.rows = None;
                    return Some(Err(match stop {
                        Stop::Failed(failure) => StoreError::backend(failure.into_source()),
                        Stop::Corrupt(error) => error,
                    }));
                }
            }
        }
    }

    /// Takes rows until a page is full or the rows end, starting the statement first if
    /// needed. A broken connection drops the page taken so far: the read starts again from its
    /// first version.
    async fn fill(&mut self) -> Result<Vec<RecordedEvent>, Stop> {
        let mut page = Vec::with_capacity(self.page_size.min(PAGE_CAPACITY));
        if self.done {
            return Ok(page);
        }
        let rows = match &mut self.rows {
            Some(rows) => rows,
            empty => empty.insert(
                Self::open(self.database, self.stream, self.next)
                    .await
                    .map_err(Stop::Failed)?,
            ),
        };
        while page.len() < self.page_size {
            match rows.rows.next().await {
                Some(Ok(row)) => page.push(self.decoder.event(&row).map_err(Stop::Corrupt)?),
                Some(Err(error)) => {
                    self.rows = None;
                    return Err(Stop::Failed(Failure::statement(error).for_read()));
                }
                None => {
                    // Every row arrived: the connection goes back to the pool now.
                    self.rows = None;
                    self.done = true;
                    break;
                }
            }
        }
        Ok(page)
    }

    /// Starts the statement reading `stream` from version `from`.
    async fn open(database: &Database, stream: &str, from: i64) -> Result<Rows, Failure> {
        database
            .retrying(|| async {
                let conn = database.conn().await?;
                let statement = conn.prepare(include_str!("sql/read_stream.sql")).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&stream, &from];
                let rows = conn
                    .client
                    .query_raw(&statement, params)
                    .await
                    .map_err(|error| Failure::statement(error).for_read())?;
                Ok(Rows {
                    rows: Box::pin(rows),
                    _conn: conn,
                })
            })
            .await
    }
}
