-- A hard delete of stream ?1: its events.
DELETE FROM events WHERE stream = ?1
