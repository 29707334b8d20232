-- Removes each alarm $1[i] that holder $2[i] holds, in one statement, and returns the pairs
-- removed.
DELETE FROM alarms AS a
USING unnest($1::text[], $2::text[]) AS d(id, holder)
WHERE a.id = d.id AND a.holder = d.holder
RETURNING a.id, a.holder
