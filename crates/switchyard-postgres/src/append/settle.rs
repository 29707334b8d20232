//! Settling an append whose connection broke after it was sent: end its session so its
//! transaction is final, then look for it by message id.

use switchyard_aggregates::store::{AppendError, ExpectedVersion, StoreError};

use crate::db::Database;
use crate::error::{BoxError, Failure};
use crate::expected::{conflict, satisfies};
use crate::pool::Session;

/// The session of a lost append could not be ended, so it may still commit.
#[derive(Debug, thiserror::Error)]
#[error("the session of the lost append (pid {pid}) is still running")]
struct SessionStillRunning {
    pid: i32,
}

/// The connection broke after the append was sent: end its session so its transaction is
/// final, then look for the append by message id.
pub(super) async fn settle(
    database: &Database,
    stream: &str,
    expected: ExpectedVersion,
    count: i64,
    message_id: &str,
    session: Session,
    source: BoxError,
) -> Result<i64, AppendError> {
    if message_id.is_empty() {
        return Err(AppendError::Unknown {
            stream: stream.to_owned(),
            source,
        });
    }
    let looked = database
        .retrying(|| async {
            let conn = database.conn().await?;
            let gone = conn
                .query_opt(
                    include_str!("../sql/settle.sql"),
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
                    include_str!("../sql/find_message.sql"),
                    &[&stream, &message_id],
                )
                .await
                .map_err(Failure::for_read)?
                .map(|row| row.try_get::<_, Option<i64>>(0))
                .transpose()
                .map_err(|error| Failure::Refused(error.into()))?
                .flatten();
            let actual = conn
                .query_opt(include_str!("../sql/stream_version.sql"), &[&stream])
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
            let decided = decide(stream, message_id, expected, count, found, actual, source);
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
/// too), a duplicate if the message recorded events earlier (trying again would be refused so),
/// else a store failure to try again.
fn decide(
    stream: &str,
    message_id: &str,
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
    match (applied, found) {
        (Some(last), _) => Ok(last),
        (None, _) if !satisfies(expected, actual) => Err(conflict(stream, expected, actual)),
        (None, Some(version)) => Err(AppendError::Duplicate {
            stream: stream.to_owned(),
            message_id: message_id.to_owned(),
            version,
        }),
        (None, None) => Err(AppendError::Store(StoreError::Backend { source })),
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
        decide("s", "m", expected, count, found, actual, lost())
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
    fn it_reports_a_duplicate_when_the_message_recorded_earlier_and_the_stream_waits() {
        // At the expected version, with the message's events elsewhere: this append was
        // refused, or would be if sent again.
        match check(ExpectedVersion::Exactly(9), 1, Some(2), Some(9)) {
            Err(AppendError::Duplicate {
                message_id,
                version,
                ..
            }) => assert_eq!((&*message_id, version), ("m", 2)),
            other => panic!("{other:?}"),
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
}
