-- Undoes a claim whose message turned out unreadable: no lease, no attempt counted. Only the
-- claim just made ($2 until $3) is undone.
UPDATE alarms SET holder = NULL, lease_until = NULL, attempts = attempts - 1
WHERE id = $1 AND holder = $2 AND lease_until = $3
