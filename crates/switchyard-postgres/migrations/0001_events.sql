-- Streams, events, snapshots and states of switchyard-aggregates' store traits.

-- One row per stream: its last version, and the versions a soft delete hid. Appends update the
-- row only if the stream is at the expected version; the row's lock orders writers of one
-- stream, never of two.
CREATE TABLE streams (
    stream         text   PRIMARY KEY,
    last_version   bigint NOT NULL CHECK (last_version >= 0),
    hidden_through bigint NOT NULL DEFAULT -1 CHECK (hidden_through >= -1)
);

-- The global position is the writing transaction's id shifted left by 20 bits, plus the
-- event's index in that transaction. Positions therefore follow transaction ids, and a reader
-- that returns only events of transactions older than the oldest one still running
-- (pg_snapshot_xmin) never returns a position below one that may still commit. The CHECK keeps
-- every position inside its transaction's range.
CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    stream         text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 0),
    event_type     text        NOT NULL,
    schema_version bigint      NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    data           bytea       NOT NULL,
    message_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text        NOT NULL,
    user_metadata  jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream, version),
    CHECK (position >> 20 = transaction_id::text::bigint)
);

-- Idempotency look-ups: the last version a message recorded in a stream.
CREATE INDEX events_stream_message ON events (stream, message_id, version)
    WHERE message_id <> '';

-- The latest snapshot of each stream.
CREATE TABLE snapshots (
    stream         text        PRIMARY KEY,
    version        bigint      NOT NULL,
    schema_version bigint      NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    data           bytea       NOT NULL,
    saved_at       timestamptz NOT NULL DEFAULT now()
);

-- The whole state of each state-based aggregate.
CREATE TABLE states (
    stream         text        PRIMARY KEY,
    version        bigint      NOT NULL,
    schema_version bigint      NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    data           bytea       NOT NULL,
    saved_at       timestamptz NOT NULL DEFAULT now()
);
