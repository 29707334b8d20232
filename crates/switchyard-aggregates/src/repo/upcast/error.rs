//! Why an event could not be brought up to its aggregate's current schema version.

use std::fmt;

use switchyard_messaging::codec;

use crate::store::RecordedEvent;

/// The recorded event an [`UpcastError`] is about: its stream, version, global position and
/// the name it was recorded under.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventLocation {
    /// The stream.
    pub stream: String,
    /// The event's version in the stream.
    pub version: i64,
    /// Its position in the global order.
    pub position: u64,
    /// The name it was recorded under: the key its upcasters are registered by.
    pub event_type: String,
}

impl EventLocation {
    pub(crate) fn of(recorded: &RecordedEvent) -> Self {
        Self {
            stream: recorded.stream.to_string(),
            version: recorded.version,
            position: recorded.position,
            event_type: recorded.event_type.to_string(),
        }
    }
}

impl fmt::Display for EventLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} of stream `{}` (`{}`, position {})",
            self.version, self.stream, self.event_type, self.position
        )
    }
}

/// An event recorded with an older (or newer) schema version could not be brought to its
/// aggregate's [`EVENT_SCHEMA_VERSION`](crate::Aggregate::EVENT_SCHEMA_VERSION). Nothing is
/// skipped: the read that met it fails, naming the event and the versions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The chain has a hole: no upcaster takes events of this type on from version `missing`
    /// (neither one for its type nor one for every type). Register the step from `missing` to
    /// `missing + 1` ([`Upcasters::step`](super::Upcasters::step)).
    #[error(
        "no upcaster takes {event} from schema version {missing} to {next}: it was recorded at \
         version {recorded} and is read at {current}; register a step from version {missing}",
        next = missing + 1
    )]
    MissingStep {
        /// The event.
        event: EventLocation,
        /// The schema version it was recorded with.
        recorded: u32,
        /// The aggregate's current version, which the chain must reach.
        current: u32,
        /// The first version no step starts from.
        missing: u32,
    },
    /// The step from version `from` failed on the event (see the source): the event does not
    /// decode as the step's old type, the step refused it, or its result does not encode. Fix
    /// the step (or the old type it decodes).
    #[error("upcasting {event} from schema version {from} to {to} failed")]
    Failed {
        /// The event.
        event: EventLocation,
        /// The version the failed step starts from.
        from: u32,
        /// The version it was to produce, `from + 1`.
        to: u32,
        /// What went wrong.
        #[source]
        source: StepError,
    },
    /// The event was recorded with a schema version newer than the aggregate's: a newer
    /// release of the code wrote it. There is no way down; run the newer code.
    #[error(
        "{event} was recorded with schema version {recorded}, newer than the version {current} \
         this code reads: it was written by a newer release"
    )]
    Newer {
        /// The event.
        event: EventLocation,
        /// The schema version it was recorded with.
        recorded: u32,
        /// The aggregate's current version.
        current: u32,
    },
}

impl UpcastError {
    /// The event the error is about.
    pub fn event(&self) -> &EventLocation {
        match self {
            Self::MissingStep { event, .. }
            | Self::Failed { event, .. }
            | Self::Newer { event, .. } => event,
        }
    }
}

/// Why one upcasting step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The recorded bytes do not decode as the step's old type.
    #[error("the event does not decode as the step's old type")]
    Decode(#[source] codec::DecodeError),
    /// The step refused the event ([`Upcasters::try_step`](super::Upcasters::try_step)).
    #[error("the upcaster refused the event")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The step's new event does not encode.
    #[error("the upcast event does not encode")]
    Encode(#[source] codec::EncodeError),
}
