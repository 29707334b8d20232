-- Saves alarm ?1 of aggregate ?2, due at ?3 with message ?4 and ?5 attempts counted, replacing
-- one with the same id; unleased either way.
INSERT INTO alarms
    (id, aggregate_id, due, message, holder, lease_until, attempts)
VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5)
ON CONFLICT (id) DO UPDATE SET
    aggregate_id = excluded.aggregate_id, due = excluded.due,
    message = excluded.message, holder = NULL, lease_until = NULL,
    attempts = excluded.attempts
