//! Which events a subscription hands out: by aggregate type, stream and event type.

use switchyard_aggregates::store::RecordedEvent;

/// The events a subscription hands out. Each kind of rule (aggregate types, streams, event
/// types) lets an event through when any of its values matches, or when it has none; an event
/// is handed out when every kind lets it through. The empty filter lets everything through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Stream prefixes, `"{NAME}-"`: the streams of one aggregate type, as `Repo` names them.
    stream_prefixes: Vec<String>,
    streams: Vec<String>,
    event_types: Vec<String>,
}

impl Filter {
    /// Also lets through the streams of the aggregate type named `name` (`"{name}-{id}"`).
    pub(crate) fn add_aggregate_type(&mut self, name: &str) {
        self.stream_prefixes.push(format!("{name}-"));
    }

    /// Also lets through the stream `stream`.
    pub(crate) fn add_stream(&mut self, stream: &str) {
        self.streams.push(stream.to_owned());
    }

    /// Also lets through events of type `event_type`.
    pub(crate) fn add_event_type(&mut self, event_type: &str) {
        self.event_types.push(event_type.to_owned());
    }

    /// Whether `event` is handed out.
    pub(crate) fn matches(&self, event: &RecordedEvent) -> bool {
        let stream = &*event.stream;
        let by_aggregate = self.stream_prefixes.is_empty() && self.streams.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|p| stream.starts_with(p.as_str()))
            || self.streams.iter().any(|s| s == stream);
        let by_type =
            self.event_types.is_empty() || self.event_types.iter().any(|t| *t == *event.event_type);
        by_aggregate && by_type
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;

    fn event(stream: &str, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            stream: Arc::from(stream),
            version: 0,
            position: 1,
            event_type: Arc::from(event_type),
            schema_version: 1,
            data: Default::default(),
            metadata: Default::default(),
            recorded_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn check(filter: &Filter, stream: &str, event_type: &str, expected: bool) {
        assert_eq!(
            filter.matches(&event(stream, event_type)),
            expected,
            "{stream} {event_type}"
        );
    }

    #[test]
    fn the_empty_filter_lets_everything_through() {
        check(&Filter::default(), "account-1", "opened", true);
    }

    #[test]
    fn an_aggregate_type_is_a_stream_prefix_with_its_dash() {
        let mut filter = Filter::default();
        filter.add_aggregate_type("account");
        check(&filter, "account-1", "opened", true);
        check(&filter, "accounting-1", "opened", false);
        check(&filter, "account", "opened", false);
    }

    #[test]
    fn streams_and_aggregate_types_add_up_and_event_types_narrow_them() {
        let mut filter = Filter::default();
        filter.add_aggregate_type("account");
        filter.add_stream("ledger");
        filter.add_event_type("opened");
        filter.add_event_type("closed");
        check(&filter, "account-1", "opened", true);
        check(&filter, "ledger", "closed", true);
        check(&filter, "ledger", "deposited", false);
        check(&filter, "order-1", "opened", false);
    }
}
