DELETE FROM alarms WHERE id = $1 AND holder = $2
