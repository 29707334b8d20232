-- The last version of stream ?1, soft-deleted events included; NULL: no such stream.
SELECT max(version) FROM events WHERE stream = ?1
