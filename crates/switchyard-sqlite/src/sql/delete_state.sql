-- Removes the state of stream ?1.
DELETE FROM states WHERE stream = ?1
