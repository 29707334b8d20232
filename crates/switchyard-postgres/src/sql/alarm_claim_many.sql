-- alarm_claim.sql for each alarm $1[i] and holder $2[i] at once (the ids distinct): one
-- statement, so the batch's row locks are taken together. Returns the alarms claimed, with
-- their ids last.
UPDATE alarms AS a SET holder = c.holder, lease_until = $5,
    attempts = a.attempts
        + CASE WHEN a.holder = c.holder AND a.lease_until > $3 THEN 0 ELSE 1 END
FROM unnest($1::text[], $2::text[]) AS c(id, holder)
WHERE a.id = c.id AND a.due <= $4
    AND (a.holder IS NULL OR a.holder = c.holder OR a.lease_until <= $3)
RETURNING a.aggregate_id, a.due, a.message, a.attempts, a.id
