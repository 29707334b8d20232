INSERT INTO alarms (id, aggregate_id, due, message, holder, lease_until, attempts)
VALUES ($1, $2, $3, $4, NULL, NULL, $5)
ON CONFLICT (id) DO UPDATE SET
    aggregate_id = excluded.aggregate_id, due = excluded.due, message = excluded.message,
    holder = NULL, lease_until = NULL, attempts = excluded.attempts
