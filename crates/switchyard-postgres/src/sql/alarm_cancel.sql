DELETE FROM alarms WHERE id = $1
