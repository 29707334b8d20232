DELETE FROM events WHERE stream = $1
