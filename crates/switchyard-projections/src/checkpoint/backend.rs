//! For writers of checkpoint stores: the rules every store decides by, and the conversions the
//! SQL stores share, so every store answers alike.
//!
//! SQL stores decide in their statements (a fenced `UPDATE`, an `INSERT … ON CONFLICT` for
//! acquisitions) and use [`refusal`] only to explain a write their statement refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_messaging::names::{self, NameKind};

use super::{CheckpointError, CheckpointInfo, LeaseHolder, LeaseToken, MAX_POSITION, ParkedEvent};

/// A projection's row as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The position processed through.
    pub position: u64,
    /// The generation of the last acquisition.
    pub generation: u64,
    /// The holder, `None` once released.
    pub holder: Option<String>,
    /// When the holder's lease lapses.
    pub lease_until: Option<SystemTime>,
}

/// What an acquisition does, decided by [`decide_acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquisition {
    /// Another holder's lease is live: nothing is written.
    Refused(LeaseHolder),
    /// The lease is the caller's, in this generation (a new one, or its own live one kept).
    Granted {
        /// The generation to store and hand out.
        generation: u64,
    },
}

/// Decides an acquisition of a projection stored as `stored` (`None`: never seen) by `holder`
/// at `now`.
pub fn decide_acquire(
    stored: Option<&StoredCheckpoint>,
    holder: &str,
    now: SystemTime,
) -> Acquisition {
    let Some(stored) = stored else {
        return Acquisition::Granted { generation: 1 };
    };
    match (&stored.holder, stored.lease_until) {
        (Some(current), Some(until)) if until > now => {
            if current == holder {
                Acquisition::Granted {
                    generation: stored.generation,
                }
            } else {
                Acquisition::Refused(LeaseHolder {
                    holder: current.clone(),
                    until,
                })
            }
        }
        _ => Acquisition::Granted {
            generation: stored.generation.saturating_add(1),
        },
    }
}

/// Whether `lease` is the current one of a projection stored as `stored`.
pub fn holds(stored: Option<&StoredCheckpoint>, lease: &LeaseToken) -> bool {
    stored.is_some_and(|stored| {
        stored.generation == lease.generation && stored.holder.as_deref() == Some(&lease.holder)
    })
}

/// Decides a fenced write by `lease` (a save of `position`, or a reset when `None`) against
/// `stored`: `Ok` when it may go.
///
/// # Errors
///
/// [`CheckpointError::LeaseLost`] first, then [`CheckpointError::NotForward`].
pub fn check_fenced_write(
    stored: Option<&StoredCheckpoint>,
    lease: &LeaseToken,
    position: Option<u64>,
) -> Result<(), CheckpointError> {
    if !holds(stored, lease) {
        return Err(CheckpointError::lease_lost(lease));
    }
    match (stored, position) {
        (Some(stored), Some(position)) if position <= stored.position => {
            Err(CheckpointError::NotForward {
                projection: lease.projection.clone(),
                position,
                current: stored.position,
            })
        }
        _ => Ok(()),
    }
}

/// Why a fenced write that a store's statement refused was refused, from the row as read after
/// it. When that row would allow the write, it changed under the write (the same lease used
/// concurrently): reported as [`CheckpointError::LeaseLost`], the safe answer.
pub fn refusal(
    stored: Option<&StoredCheckpoint>,
    lease: &LeaseToken,
    position: Option<u64>,
) -> CheckpointError {
    check_fenced_write(stored, lease, position)
        .err()
        .unwrap_or_else(|| CheckpointError::lease_lost(lease))
}

/// Checks a projection's name against the [`names`] rule.
///
/// # Errors
///
/// [`CheckpointError::Name`].
pub fn check_projection(projection: &str) -> Result<(), CheckpointError> {
    Ok(names::check(NameKind::Projection, projection)?)
}

/// Checks a projection's name and a holder's against the [`names`] rule.
///
/// # Errors
///
/// [`CheckpointError::Name`].
pub fn check_names(projection: &str, holder: &str) -> Result<(), CheckpointError> {
    check_projection(projection)?;
    Ok(names::check(NameKind::LeaseHolder, holder)?)
}

/// A position as an SQL `bigint`.
///
/// # Errors
///
/// [`CheckpointError::PositionTooLarge`] beyond [`MAX_POSITION`].
pub fn position_column(position: u64) -> Result<i64, CheckpointError> {
    if position > MAX_POSITION {
        return Err(CheckpointError::PositionTooLarge { position });
    }
    i64::try_from(position).map_err(|_| CheckpointError::PositionTooLarge { position })
}

/// A position or generation read from an SQL `bigint`.
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] for a negative value (written by hand).
pub fn unsigned_from_column(projection: &str, stored: i64) -> Result<u64, CheckpointError> {
    u64::try_from(stored).map_err(|_| CheckpointError::Corrupt {
        projection: projection.to_owned(),
        reason: format!("negative position or generation {stored}"),
    })
}

/// A generation as an SQL `bigint` (generations grow by one per acquisition, so never reach
/// the limit; one beyond it is refused as [`CheckpointError::LeaseLost`], which it cannot hold).
///
/// # Errors
///
/// [`CheckpointError::LeaseLost`].
pub fn generation_column(lease: &LeaseToken) -> Result<i64, CheckpointError> {
    i64::try_from(lease.generation).map_err(|_| CheckpointError::lease_lost(lease))
}

/// A time as microseconds since the Unix epoch (before it: negative), saturating.
pub fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// A time from microseconds since the Unix epoch.
pub fn time_from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A row of a checkpoint listing, from its columns as SQL stores keep them: the position as a
/// signed integer, times as microseconds since the Unix epoch, and the lease's holder and end
/// (both present, or neither).
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] when the stored position is negative.
pub fn checkpoint_info(
    projection: String,
    position: i64,
    updated_at: Option<i64>,
    holder: Option<String>,
    until: Option<i64>,
) -> Result<CheckpointInfo, CheckpointError> {
    Ok(CheckpointInfo {
        position: unsigned_from_column(&projection, position)?,
        projection,
        updated_at: updated_at.map(time_from_micros),
        lease: holder.zip(until).map(|(holder, until)| LeaseHolder {
            holder,
            until: time_from_micros(until),
        }),
    })
}

/// Checks a park of `event` by `lease` before it reaches the backend: the names, the event's
/// projection against the lease's. Returns the lease's generation and the event's position as
/// columns.
///
/// # Errors
///
/// A name error, [`CheckpointError::ProjectionMismatch`],
/// [`CheckpointError::PositionTooLarge`], or [`CheckpointError::LeaseLost`] for a generation
/// no store holds.
pub fn park_columns(
    lease: &LeaseToken,
    event: &ParkedEvent,
) -> Result<(i64, i64), CheckpointError> {
    check_names(&lease.projection, &lease.holder)?;
    if event.projection != lease.projection {
        return Err(CheckpointError::ProjectionMismatch {
            lease: lease.projection.clone(),
            parked: event.projection.clone(),
        });
    }
    Ok((generation_column(lease)?, position_column(event.position)?))
}

/// The columns of a parked event's row as SQL stores keep them, after its projection: position,
/// stream, version, event type, error, attempts, and the time parked (microseconds since the
/// Unix epoch).
pub type ParkedColumns = (i64, String, i64, String, String, i64, i64);

/// A parked event of `projection` from its row's columns.
///
/// # Errors
///
/// [`CheckpointError::Corrupt`] for a negative position or a count of attempts out of range.
pub fn parked_event(
    projection: &str,
    columns: ParkedColumns,
) -> Result<ParkedEvent, CheckpointError> {
    let (position, stream, version, event_type, error, attempts, parked_at) = columns;
    Ok(ParkedEvent {
        projection: projection.to_owned(),
        position: unsigned_from_column(projection, position)?,
        stream,
        version,
        event_type,
        error,
        attempts: u32::try_from(attempts).map_err(|_| CheckpointError::Corrupt {
            projection: projection.to_owned(),
            reason: format!("{attempts} attempts of a parked event"),
        })?,
        parked_at: time_from_micros(parked_at),
    })
}
