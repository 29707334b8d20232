//! Appending: one statement per append, retried only while nothing can have been written, and
//! an unknown outcome settled by message id.

use switchyard_aggregates::store::{
    AppendError, EventMetadata, ExpectedVersion, NewEvent, StoreError,
};

use crate::error::{BoxError, Failure, is_unique_violation};
use crate::pool::Session;
use crate::store::Inner;

/// The most events one append may hold: the events of one transaction take positions
/// `id << 20 .. (id + 1) << 20` (see the crate docs).
pub const MAX_EVENTS_PER_APPEND: usize = (1 << 20) - 1;

/// How many times an append with [`ExpectedVersion::Any`] is run again after losing a race on
/// the stream's creation or hard delete (it can always succeed; the races are rare).
const ANY_ATTEMPTS: usize = 8;

/// An append held more than [`MAX_EVENTS_PER_APPEND`] events.
#[derive(Debug, thiserror::Error)]
#[error("an append holds at most {max} events, this one held {count}", max = MAX_EVENTS_PER_APPEND)]
struct TooManyEvents {
    count: usize,
}

/// The connection was found closed before the statement was sent.
#[derive(Debug, thiserror::Error)]
#[error("connection closed before the statement was sent")]
struct ClosedBeforeSend;

/// The session of a lost append could not be ended, so it may still commit.
#[derive(Debug, thiserror::Error)]
#[error("the session of the lost append (pid {pid}) is still running")]
struct SessionStillRunning {
    pid: i32,
}

/// `expected` as the statements take it: a kind (0 any, 1 no stream, 2 exactly) and a version.
pub(crate) fn expected_params(expected: ExpectedVersion) -> (i32, i64) {
    match expected {
        ExpectedVersion::Any => (0, -1),
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => (1, -1),
        ExpectedVersion::Exactly(version) => (2, version),
    }
}

/// Whether a stream at `actual` (`None`: no stream) is at `expected`; the memory store's rule.
pub(crate) fn satisfies(expected: ExpectedVersion, actual: Option<i64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1) => actual.is_none(),
        ExpectedVersion::Exactly(version) => actual == Some(version),
    }
}

pub(crate) fn conflict(
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<i64>,
) -> AppendError {
    AppendError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

/// What one run of the append statement did.
enum Ran {
    /// Appended after the given version.
    Appended(i64),
    /// The stream was not at the expected version; nothing was written.
    NotAtExpected,
    /// The connection broke after the statement was sent.
    Lost { session: Session, source: BoxError },
}

pub(crate) async fn append(
    inner: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: EventMetadata,
) -> Result<i64, AppendError> {
    if events.is_empty() {
        let actual = inner.stream_version(stream).await?;
        return if satisfies(expected, actual) {
            Ok(actual.unwrap_or(-1))
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
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schema_versions: Vec<i64> = events.iter().map(|e| i64::from(e.schema_version)).collect();
    let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_ref()).collect();
    let user = serde_json::to_string(&metadata.user).map_err(StoreError::backend)?;
    let (kind, version) = expected_params(expected);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &stream,
        &kind,
        &version,
        &types,
        &schema_versions,
        &data,
        &metadata.message_id,
        &metadata.correlation_id,
        &metadata.causation_id,
        &user,
    ];
    for _ in 0..ANY_ATTEMPTS {
        let ran = inner
            .retrying(|| async {
                let conn = inner.conn().await?;
                let statement = conn.prepare(include_str!("sql/append.sql")).await?;
                if conn.client.is_closed() {
                    return Err(Failure::Retry(Box::new(ClosedBeforeSend)));
                }
                match conn.client.query_opt(&statement, &params).await {
                    Ok(Some(row)) => match row.try_get::<_, i64>(0) {
                        Ok(before) => Ok(Ran::Appended(before)),
                        // Written, but unreadable: as good as lost.
                        Err(error) => Ok(Ran::Lost {
                            session: conn.session,
                            source: error.into(),
                        }),
                    },
                    Ok(None) => Ok(Ran::NotAtExpected),
                    Err(error) => match Failure::statement(error) {
                        Failure::Lost(source) => Ok(Ran::Lost {
                            session: conn.session,
                            source,
                        }),
                        Failure::Refused(source) if is_unique_violation(&source) => {
                            Ok(Ran::NotAtExpected)
                        }
                        other => Err(other),
                    },
                }
            })
            .await
            .map_err(|failure| StoreError::backend(failure.into_source()))?;
        match ran {
            Ran::Appended(before) => return Ok(before + count),
            Ran::Lost { session, source } => {
                return settle(inner, stream, expected, count, &metadata, session, source).await;
            }
            Ran::NotAtExpected => {
                let actual = inner.stream_version(stream).await?;
                if !satisfies(expected, actual) {
                    return Err(conflict(stream, expected, actual));
                }
                // Lost a race that a new run wins: another writer created or hard-deleted the
                // stream between this statement's snapshot and its locks.
            }
        }
    }
    let actual = inner.stream_version(stream).await?;
    Err(conflict(stream, expected, actual))
}

/// The connection broke after the append was sent: end its session so its transaction is
/// final, then look for the append by message id.
async fn settle(
    inner: &Inner,
    stream: &str,
    expected: ExpectedVersion,
    count: i64,
    metadata: &EventMetadata,
    session: Session,
    source: BoxError,
) -> Result<i64, AppendError> {
    let message_id = metadata.message_id.as_str();
    if message_id.is_empty() {
        return Err(AppendError::Unknown {
            stream: stream.to_owned(),
            source,
        });
    }
    let looked = inner
        .retrying(|| async {
            let conn = inner.conn().await?;
            let gone = conn
                .query_opt(
                    include_str!("sql/settle.sql"),
                    &[&session.pid, &session.started],
                )
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, bool>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?
                .unwrap_or(true);
            if !gone {
                return Err(Failure::Refused(Box::new(SessionStillRunning {
                    pid: session.pid,
                })));
            }
            let found = conn
                .query_opt(
                    include_str!("sql/find_message.sql"),
                    &[&stream, &message_id],
                )
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, Option<i64>>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?
                .flatten();
            let actual = conn
                .query_opt(include_str!("sql/stream_version.sql"), &[&stream])
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?;
            Ok((found, actual))
        })
        .await;
    match looked {
        Ok((found, actual)) => {
            let decided = decide(stream, expected, count, found, actual, source);
            tracing::warn!(
                target: "switchyard_postgres",
                stream,
                message.id = message_id,
                outcome = ?decided,
                "an append's connection broke after it was sent; settled by message id"
            );
            decided
        }
        Err(failure) => {
            tracing::warn!(
                target: "switchyard_postgres",
                stream,
                message.id = message_id,
                ?failure,
                "an append's connection broke after it was sent and its outcome could not be checked"
            );
            Err(AppendError::Unknown {
                stream: stream.to_owned(),
                source,
            })
        }
    }
}

/// The outcome of an append whose connection broke, once its session is gone: `found` is the
/// last version its message id recorded in the stream, `actual` the stream's version now.
///
/// Applied when the message's last event sits where this append's would have: `count` events
/// after the expected version (with `Any`, wherever it is). Otherwise nothing was written: a
/// conflict if the stream is no longer at the expected version (trying again would conflict
/// too), else a store failure to try again.
fn decide(
    stream: &str,
    expected: ExpectedVersion,
    count: i64,
    found: Option<i64>,
    actual: Option<i64>,
    source: BoxError,
) -> Result<i64, AppendError> {
    let applied = match (expected, found) {
        (ExpectedVersion::Any, Some(last)) => Some(last),
        (ExpectedVersion::NoStream | ExpectedVersion::Exactly(-1), Some(last))
            if last == count - 1 =>
        {
            Some(last)
        }
        (ExpectedVersion::Exactly(version), Some(last))
            if version >= 0 && Some(last) == version.checked_add(count) =>
        {
            Some(last)
        }
        _ => None,
    };
    match applied {
        Some(last) => Ok(last),
        None if satisfies(expected, actual) => {
            Err(AppendError::Store(StoreError::Backend { source }))
        }
        None => Err(conflict(stream, expected, actual)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn lost() -> BoxError {
        "connection reset".into()
    }

    fn check(
        expected: ExpectedVersion,
        count: i64,
        found: Option<i64>,
        actual: Option<i64>,
    ) -> Result<i64, AppendError> {
        decide("s", expected, count, found, actual, lost())
    }

    #[test]
    fn it_reports_success_when_the_message_recorded_the_events_where_this_append_would_have() {
        assert_eq!(
            check(ExpectedVersion::Exactly(4), 3, Some(7), Some(7)).unwrap(),
            7
        );
        assert_eq!(
            check(ExpectedVersion::NoStream, 2, Some(1), Some(1)).unwrap(),
            1
        );
        assert_eq!(
            check(ExpectedVersion::Exactly(-1), 1, Some(0), Some(5)).unwrap(),
            0
        );
        assert_eq!(
            check(ExpectedVersion::Any, 1, Some(12), Some(20)).unwrap(),
            12
        );
    }

    #[test]
    fn it_reports_a_conflict_when_nothing_was_written_and_the_stream_moved_on() {
        for (expected, found, actual) in [
            (ExpectedVersion::Exactly(4), None, Some(6)),
            (ExpectedVersion::NoStream, None, Some(0)),
            (ExpectedVersion::Exactly(4), None, None),
            // The message id was recorded, but by an earlier append, not this one.
            (ExpectedVersion::Exactly(4), Some(2), Some(9)),
        ] {
            match check(expected, 3, found, actual) {
                Err(AppendError::Conflict {
                    actual: reported, ..
                }) => assert_eq!(reported, actual),
                other => panic!("{expected:?} {found:?} {actual:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn it_reports_a_failure_to_retry_when_nothing_was_written_and_the_stream_waits() {
        for (expected, actual) in [
            (ExpectedVersion::Exactly(4), Some(4)),
            (ExpectedVersion::NoStream, None),
            (ExpectedVersion::Any, Some(3)),
            (ExpectedVersion::Any, None),
        ] {
            match check(expected, 1, None, actual) {
                Err(AppendError::Store(StoreError::Backend { source })) => {
                    assert_eq!(source.to_string(), "connection reset");
                }
                other => panic!("{expected:?} {actual:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn expected_versions_follow_the_memory_store() {
        assert!(satisfies(ExpectedVersion::Any, None));
        assert!(satisfies(ExpectedVersion::Exactly(-1), None));
        assert!(!satisfies(ExpectedVersion::Exactly(-1), Some(0)));
        assert!(!satisfies(ExpectedVersion::NoStream, Some(3)));
        assert!(satisfies(ExpectedVersion::Exactly(3), Some(3)));
        assert!(!satisfies(ExpectedVersion::Exactly(3), None));
        assert_eq!(expected_params(ExpectedVersion::Exactly(-1)), (1, -1));
        assert_eq!(expected_params(ExpectedVersion::Exactly(9)), (2, 9));
    }
}
