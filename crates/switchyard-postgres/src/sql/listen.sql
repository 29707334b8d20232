-- The channel the events_notify trigger (migration 0004) notifies after each commit of events.
LISTEN switchyard_events
