-- Parked events of switchyard-projections: events a projection kept failing on, set aside so
-- it could go on past them, until an operator retries or skips them. One row per projection and
-- global position; `attempts` counts the tries, `parked_at` is microseconds since the Unix
-- epoch.
CREATE TABLE parked_events (
    projection TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    stream     TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    parked_at  INTEGER NOT NULL,
    PRIMARY KEY (projection, position)
) WITHOUT ROWID;
