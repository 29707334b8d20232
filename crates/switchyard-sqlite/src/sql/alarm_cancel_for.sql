-- Removes every alarm of aggregate ?1; returns their ids.
DELETE FROM alarms WHERE aggregate_id = ?1 RETURNING id
