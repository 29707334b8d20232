-- Wakes the listeners of every process: events of schema $1 were committed.
SELECT pg_notify('switchyard_events', $1)
