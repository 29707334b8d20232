-- The last position given to an event: AUTOINCREMENT keeps it in sqlite_sequence, also after a
-- hard delete removed the events at the end (0 before the first event).
SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)
