-- Every projection, by name (bytewise, as the other stores order them).
SELECT name, position, updated_at, holder, lease_until FROM checkpoints ORDER BY name COLLATE "C"
