-- Every projection, by name (bytewise: text compares with BINARY).
SELECT name, position, updated_at, holder, lease_until FROM checkpoints ORDER BY name
