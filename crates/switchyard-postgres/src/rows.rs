//! Rows to recorded events and stored states.
//!
//! Consecutive rows of one append share their stream, type and metadata: the decoder hands
//! out one `Arc` for each instead of a copy per event (and parses the user metadata's JSON once
//! per append, not per event).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use switchyard_aggregates::store::{EventMetadata, RecordedEvent, StoreError, StoredState};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

/// A row's columns by index: a driver's row, or (for the fuzz targets) raw column bytes run
/// through the same `FromSql` conversions.
pub(crate) trait Columns {
    /// Column `index` as a `T`: an error when it does not convert (wrong type, NULL, bad bytes).
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, StoreError>;
}

impl Columns for Row {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, StoreError> {
        self.try_get(index).map_err(StoreError::backend)
    }
}

/// Decodes rows of `read_stream.sql` and `read_all.sql`, whose event columns start at
/// `first`.
#[derive(Default)]
pub(crate) struct Decoder {
    first: usize,
    stream: Option<Arc<str>>,
    event_type: Option<Arc<str>>,
    metadata: Option<(Arc<EventMetadata>, String)>,
}

impl Decoder {
    /// A decoder of rows whose event columns start at `first`.
    pub(crate) fn at(first: usize) -> Self {
        Self {
            first,
            ..Self::default()
        }
    }

    pub(crate) fn event(&mut self, row: &impl Columns) -> Result<RecordedEvent, StoreError> {
        let at = self.first;
        let stream_name: &str = row.column(at)?;
        let stream = match &self.stream {
            Some(known) if &**known == stream_name => known.clone(),
            _ => {
                let fresh: Arc<str> = Arc::from(stream_name);
                self.stream = Some(fresh.clone());
                fresh
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            stream: stream_name.to_owned(),
            reason,
        };
        let version: i64 = row.column(at + 1)?;
        let position: i64 = row.column(at + 2)?;
        let event_type_name: &str = row.column(at + 3)?;
        let event_type = match &self.event_type {
            Some(known) if &**known == event_type_name => known.clone(),
            _ => {
                let fresh: Arc<str> = Arc::from(event_type_name);
                self.event_type = Some(fresh.clone());
                fresh
            }
        };
        let schema_version: i64 = row.column(at + 4)?;
        let data: &[u8] = row.column(at + 5)?;
        let message_id: &str = row.column(at + 6)?;
        let correlation_id: &str = row.column(at + 7)?;
        let causation_id: &str = row.column(at + 8)?;
        let user: &str = row.column(at + 9)?;
        let recorded_at: SystemTime = row.column(at + 10)?;
        let metadata = match &self.metadata {
            Some((known, known_user))
                if known.message_id == message_id
                    && known.correlation_id == correlation_id
                    && known.causation_id == causation_id
                    && known_user == user =>
            {
                known.clone()
            }
            _ => {
                let parsed: BTreeMap<String, String> = serde_json::from_str(user)
                    .map_err(|error| corrupt(format!("user metadata: {error}")))?;
                let fresh = Arc::new(EventMetadata {
                    message_id: message_id.to_owned(),
                    correlation_id: correlation_id.to_owned(),
                    causation_id: causation_id.to_owned(),
                    user: parsed,
                });
                self.metadata = Some((fresh.clone(), user.to_owned()));
                fresh
            }
        };
        Ok(RecordedEvent {
            stream,
            version,
            position: u64::try_from(position)
                .map_err(|_| corrupt(format!("negative position {position}")))?,
            event_type,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| corrupt(format!("schema version {schema_version} out of range")))?,
            data: Bytes::copy_from_slice(data),
            metadata,
            recorded_at,
        })
    }
}

/// Decodes a row of `load_snapshot.sql` or `load_state.sql`.
pub(crate) fn state(stream: &str, row: &impl Columns) -> Result<StoredState, StoreError> {
    let version: i64 = row.column(0)?;
    let schema_version: i64 = row.column(1)?;
    let data: &[u8] = row.column(2)?;
    Ok(StoredState {
        version,
        schema_version: u32::try_from(schema_version).map_err(|_| StoreError::Corrupt {
            stream: stream.to_owned(),
            reason: format!("schema version {schema_version} out of range"),
        })?,
        data: Bytes::copy_from_slice(data),
    })
}
