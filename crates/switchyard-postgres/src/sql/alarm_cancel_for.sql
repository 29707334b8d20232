DELETE FROM alarms WHERE aggregate_id = $1 RETURNING id
