//! Fields every span that handles a message records.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name under which the W3C `traceparent` of the caller's trace travels.
pub const TRACE_CONTEXT_FIELD: &str = "traceparent";

/// Key-value fields that travel with a message and are recorded by every span handling it, on
/// this node or another, plus the caller's trace context.
///
/// Keys are unique; inserting an existing key replaces its value and keeps its place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFields {
    fields: Vec<(String, String)>,
}

impl LogFields {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|(existing, _)| *existing == key)
        {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key, value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(existing, _)| existing == key)
            .map(|(_, value)| value.as_str())
    }

    /// The fields in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The caller's trace context (a W3C `traceparent`), if one was set.
    pub fn trace_context(&self) -> Option<&str> {
        self.get(TRACE_CONTEXT_FIELD)
    }
}

impl fmt::Display for LogFields {
    /// `key=value` pairs separated by spaces, the form spans record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}
