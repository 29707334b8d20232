//! Appending: one statement per batch of appends, retried only while nothing can have been
//! written, and an unknown outcome settled by message id.
//!
//! [`Appender`] owns the append path. Its parts import nothing of it: `committer` batches
//! appends into statements, `settle` decides what an append whose connection broke did.

mod committer;
mod settle;

use std::sync::Arc;

use switchyard_aggregates::store::{
    AppendError, Appended, EventMetadata, ExpectedVersion, NewEvent, StoreError,
};

use self::committer::{Committers, Ran, Request};
use crate::db::Database;
use crate::expected::{self, conflict, satisfies};

/// The most events one append may hold: the events of one transaction take positions
/// `id << 20 .. (id + 1) << 20` (see the crate docs).
pub const MAX_EVENTS_PER_APPEND: usize = (1 << 20) - 1;

/// An append held more than [`MAX_EVENTS_PER_APPEND`] events.
#[derive(Debug, thiserror::Error)]
#[error("an append holds at most {max} events, this one held {count}", max = MAX_EVENTS_PER_APPEND)]
struct TooManyEvents {
    count: usize,
}

/// The append path: checks an append, hands it to the committers, and turns what they ran
/// into the caller's outcome.
pub(crate) struct Appender {
    database: Database,
    committers: Committers,
}

impl Appender {
    /// Starts `committers` committer tasks on the current runtime, writing through `database`.
    pub(crate) fn start(database: Database, committers: usize) -> Self {
        let committers = Committers::spawn(&database, committers);
        Self {
            database,
            committers,
        }
    }

    /// Appends `events` to `stream` if it is at `expected`; returns the stream's new version and
    /// the position of the last event, known from the append's statement (none when no event
    /// was appended, or when the outcome was settled after a lost connection).
    pub(crate) async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> Result<Appended, AppendError> {
        let database = &self.database;
        if events.is_empty() {
            let actual = database.stream_version(stream).await?;
            return if satisfies(expected, actual) {
                Ok(Appended {
                    version: actual.unwrap_or(-1),
                    position: None,
                })
            } else {
                Err(conflict(stream, expected, actual))
            };
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::backend(TooManyEvents {
                count: events.len(),
            })
            .into());
        }
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let (kind, version) = expected::params(expected);
        let request = Arc::new(Request {
            stream: stream.to_owned(),
            kind,
            version,
            events,
            user: serde_json::to_string(&metadata.user).map_err(StoreError::backend)?,
            message_id: metadata.message_id,
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
        });
        let ran = database
            .retrying(|| self.committers.run(request.clone()))
            .await
            .map_err(|failure| StoreError::backend(failure.into_source()))?;
        match ran {
            Ran::Appended { before, position } => Ok(Appended {
                version: before + count,
                position,
            }),
            Ran::Recorded(version) => Err(AppendError::Duplicate {
                stream: stream.to_owned(),
                message_id: request.message_id.clone(),
                version,
            }),
            Ran::Lost { session, source } => {
                let version = settle::settle(
                    database,
                    stream,
                    expected,
                    count,
                    &request.message_id,
                    session,
                    source,
                )
                .await?;
                // Settled by message id, after the connection broke: the position would
                // take another read, which this path does not spend.
                Ok(Appended {
                    version,
                    position: None,
                })
            }
            Ran::Abandoned(source) => Err(AppendError::Unknown {
                stream: stream.to_owned(),
                source,
            }),
            // The statement settles its races under the stream's row lock, so it never has to
            // run again (see `sql/append.sql`): the stream was at another version when locked,
            // whatever version it is at by now.
            Ran::NotAtExpected => {
                let actual = database.stream_version(stream).await?;
                Err(conflict(stream, expected, actual))
            }
        }
    }
}
