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

    pub(crate) fn event(&mut self, row: &Row) -> Result<RecordedEvent, StoreError> {
        let at = self.first;
        let stream_name: &str = row.try_get(at).map_err(StoreError::backend)?;
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
        let version: i64 = row.try_get(at + 1).map_err(StoreError::backend)?;
        let position: i64 = row.try_get(at + 2).map_err(StoreError::backend)?;
        let event_type_name: &str = row.try_get(at + 3).map_err(StoreError::backend)?;
        let event_type = match &self.event_type {
            Some(known) if &**known == event_type_name => known.clone(),
            _ => {
                let fresh: Arc<str> = Arc::from(event_type_name);
                self.event_type = Some(fresh.clone());
                fresh
            }
        };
        let schema_version: i64 = row.try_get(at + 4).map_err(StoreError::backend)?;
        let data: &[u8] = row.try_get(at + 5).map_err(StoreError::backend)?;
        let message_id: &str = row.try_get(at + 6).map_err(StoreError::backend)?;
        let correlation_id: &str = row.try_get(at + 7).map_err(StoreError::backend)?;
        let causation_id: &str = row.try_get(at + 8).map_err(StoreError::backend)?;
        let user: &str = row.try_get(at + 9).map_err(StoreError::backend)?;
        let recorded_at: SystemTime = row.try_get(at + 10).map_err(StoreError::backend)?;
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
pub(crate) fn state(stream: &str, row: &Row) -> Result<StoredState, StoreError> {
    let version: i64 = row.try_get(0).map_err(StoreError::backend)?;
    let schema_version: i64 = row.try_get(1).map_err(StoreError::backend)?;
    let data: &[u8] = row.try_get(2).map_err(StoreError::backend)?;
    Ok(StoredState {
        version,
        schema_version: u32::try_from(schema_version).map_err(|_| StoreError::Corrupt {
            stream: stream.to_owned(),
            reason: format!("schema version {schema_version} out of range"),
        })?,
        data: Bytes::copy_from_slice(data),
    })
}
