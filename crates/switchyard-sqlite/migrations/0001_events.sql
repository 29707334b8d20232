-- Streams: one row per stream that ever had an event (until a hard delete). The writer checks the
-- expected version here, so an append reads one row, not the stream's events.
CREATE TABLE streams (
    stream         TEXT    NOT NULL PRIMARY KEY,
    last_version   INTEGER NOT NULL,
    -- A soft delete hides the events up to this version; versions are never reused.
    hidden_through INTEGER NOT NULL DEFAULT -1
) WITHOUT ROWID;

-- Events in the global order. AUTOINCREMENT: a position is never given twice, not even after a
-- hard delete removed the last events.
CREATE TABLE events (
    position       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           BLOB    NOT NULL,
    message_id     TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL,
    -- The user's metadata, a JSON object of strings.
    user_metadata  TEXT    NOT NULL,
    -- Microseconds since the Unix epoch.
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream, version)
);

-- Idempotency: has this message already recorded events in this stream?
CREATE INDEX events_by_message ON events (stream, message_id) WHERE message_id <> '';

-- The latest snapshot of each event-sourced stream.
CREATE TABLE snapshots (
    stream         TEXT    NOT NULL PRIMARY KEY,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    data           BLOB    NOT NULL
) WITHOUT ROWID;

-- The whole state of each state-based aggregate.
CREATE TABLE states (
    stream         TEXT    NOT NULL PRIMARY KEY,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    data           BLOB    NOT NULL
) WITHOUT ROWID;
