//! The window of processed message ids a loaded aggregate starts with, from the tail of its
//! stream only.

use std::collections::VecDeque;
use std::sync::Arc;

use switchyard_messaging::Response;

use super::replayed_response;
use crate::state::ProcessedIds;
use crate::store::EventMetadata;

/// The last messages that recorded events in a stream, followed while its events are replayed.
///
/// The window holds the last N ids only, so the replay keeps the last N messages and builds
/// the window from them once at the end: per event it compares the event's metadata with the
/// latest message's (the events of one append share it), and per message it keeps a reference
/// to that metadata, never a copy of the id.
pub(super) struct Tail {
    capacity: usize,
    messages: VecDeque<Recorded>,
    /// Whether an older message was left out.
    dropped: bool,
}

struct Recorded {
    metadata: Arc<EventMetadata>,
    first_version: i64,
    last_version: i64,
}

impl Tail {
    /// Keeps the last `capacity` messages.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            messages: VecDeque::with_capacity(capacity.min(1_024)),
            dropped: false,
        }
    }

    /// Follows the event at `version`, recorded with `metadata`.
    pub(super) fn push(&mut self, metadata: &Arc<EventMetadata>, version: i64) {
        if metadata.message_id.is_empty() {
            return;
        }
        if let Some(latest) = self.messages.back_mut()
            && (Arc::ptr_eq(&latest.metadata, metadata)
                || latest.metadata.message_id == metadata.message_id)
        {
            latest.last_version = version;
            return;
        }
        self.messages.push_back(Recorded {
            metadata: metadata.clone(),
            first_version: version,
            last_version: version,
        });
        if self.messages.len() > self.capacity {
            self.messages.pop_front();
            self.dropped = true;
        }
    }

    /// Adds the messages followed, oldest first, to `window`, each answered as its first
    /// delivery was: `Created` if its events started the stream (or `window` already says so,
    /// from a snapshot), else `OkAt` at its last event.
    pub(super) fn remember(self, id: &str, window: &mut ProcessedIds) {
        for message in self.messages {
            let message_id = &message.metadata.message_id;
            let started_stream = message.first_version == 0
                || matches!(window.get(message_id), Some(Response::Created { .. }));
            window.insert(
                message_id,
                replayed_response(id, message.last_version, started_stream),
            );
        }
        if self.dropped {
            window.mark_forgotten();
        }
    }
}
