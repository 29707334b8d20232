-- The version of the state of stream ?1.
SELECT version FROM states WHERE stream = ?1
