-- Saves a state if the stored one is at the expected version ($5: 0 any, 1 none stored,
-- 2 exactly $6). Returns a row when it did.
WITH updated AS (
    UPDATE states
    SET version = $2, schema_version = $3, data = $4, saved_at = now()
    WHERE stream = $1
      AND ($5::int = 0 OR ($5::int = 2 AND version = $6::bigint))
    RETURNING 1
),
inserted AS (
    INSERT INTO states (stream, version, schema_version, data)
    SELECT $1, $2, $3, $4
    WHERE $5::int IN (0, 1)
      AND NOT EXISTS (SELECT 1 FROM states WHERE stream = $1)
    ON CONFLICT (stream) DO NOTHING
    RETURNING 1
)
SELECT 1 FROM updated
UNION ALL
SELECT 1 FROM inserted
