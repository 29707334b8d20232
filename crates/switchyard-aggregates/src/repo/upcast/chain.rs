//! The registered steps of one aggregate type, and how an event walks them: the non-generic
//! body behind [`Upcasters`](super::Upcasters).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::error::{EventLocation, StepError, UpcastError};
use crate::store::RecordedEvent;

/// One step: the encoded event at version `v` in, the encoded event at `v + 1` out.
pub(super) type Step = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, StepError> + Send + Sync>;

/// The steps that start from one schema version.
#[derive(Clone, Default)]
struct StepsFrom {
    /// For events recorded under one name; these win over `every`.
    by_type: HashMap<Box<str>, Step>,
    /// For events of every other name.
    every: Option<Step>,
}

/// Which events a step takes: those of one name, or all.
#[derive(Clone, Copy, Debug)]
pub(super) enum Takes<'a> {
    Type(&'a str),
    Every,
}

impl fmt::Display for Takes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type(event_type) => write!(f, "`{event_type}` events"),
            Self::Every => f.write_str("every event type"),
        }
    }
}

/// The steps, by the version they start from.
#[derive(Clone, Default)]
pub(super) struct Chain {
    steps: BTreeMap<u32, StepsFrom>,
}

impl Chain {
    /// Adds `step` from version `from` for the events `takes` names; `false` (and nothing
    /// changed) when one is registered for them already.
    pub(super) fn add(&mut self, takes: Takes<'_>, from: u32, step: Step) -> bool {
        let steps = self.steps.entry(from).or_default();
        match takes {
            Takes::Type(event_type) => match steps.by_type.entry(event_type.into()) {
                Entry::Vacant(slot) => {
                    slot.insert(step);
                    true
                }
                Entry::Occupied(_) => false,
            },
            Takes::Every if steps.every.is_some() => false,
            Takes::Every => {
                steps.every = Some(step);
                true
            }
        }
    }

    /// The step from version `from` for events recorded as `event_type`.
    fn find(&self, event_type: &str, from: u32) -> Option<&Step> {
        let steps = self.steps.get(&from)?;
        steps.by_type.get(event_type).or(steps.every.as_ref())
    }

    /// `recorded`'s data brought from its schema version to `current`, one step at a time.
    pub(super) fn upcast_data(
        &self,
        recorded: &RecordedEvent,
        current: u32,
    ) -> Result<Bytes, UpcastError> {
        let recorded_at = recorded.schema_version;
        if recorded_at > current {
            return Err(UpcastError::Newer {
                event: EventLocation::of(recorded),
                recorded: recorded_at,
                current,
            });
        }
        let mut data = recorded.data.clone();
        for from in recorded_at..current {
            let Some(step) = self.find(&recorded.event_type, from) else {
                return Err(UpcastError::MissingStep {
                    event: EventLocation::of(recorded),
                    recorded: recorded_at,
                    current,
                    missing: from,
                });
            };
            data = step(&data)
                .map_err(|source| UpcastError::Failed {
                    event: EventLocation::of(recorded),
                    from,
                    to: from + 1,
                    source,
                })?
                .into();
        }
        Ok(data)
    }
}

impl fmt::Debug for Chain {
    /// The steps' keys: `1: every type`, `2: ["Deposited"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (from, steps) in &self.steps {
            let mut types: Vec<&str> = steps.by_type.keys().map(|t| &**t).collect();
            types.sort_unstable();
            if steps.every.is_some() {
                types.push("*");
            }
            map.entry(from, &types);
        }
        map.finish()
    }
}
