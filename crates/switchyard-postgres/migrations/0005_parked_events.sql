-- Parked events of switchyard-projections: events a projection kept failing on, set aside so
-- it could go on past them, until an operator retries or skips them. One row per projection and
-- global position; `attempts` counts the tries, `parked_at` is microseconds since the Unix
-- epoch.
CREATE TABLE parked_events (
    projection text   NOT NULL,
    position   bigint NOT NULL,
    stream     text   NOT NULL,
    version    bigint NOT NULL,
    event_type text   NOT NULL,
    error      text   NOT NULL,
    attempts   bigint NOT NULL,
    parked_at  bigint NOT NULL,
    PRIMARY KEY (projection, position)
);
