-- Events in the global order. AUTOINCREMENT: a position is never given twice, not even after a
-- hard delete removed the last events. A stream's last version is the largest of its versions,
-- found in the (stream, version) index: an append reads one index entry and dirties no other
-- table.
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

-- Idempotency: has this message already recorded events in this stream? Keyed by message id
-- alone: default ids are UUIDv7, so new entries land on the index's last page, the one page a
-- batch of appends dirties.
CREATE INDEX events_by_message ON events (message_id) WHERE message_id <> '';

-- Soft-deleted streams: their events up to `hidden_through` stay, hidden; versions go on from
-- the last one.
CREATE TABLE tombstones (
    stream         TEXT    NOT NULL PRIMARY KEY,
    hidden_through INTEGER NOT NULL
) WITHOUT ROWID;

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
