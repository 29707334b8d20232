UPDATE alarms SET due = $3, message = $4, holder = NULL, lease_until = NULL
WHERE id = $1 AND holder = $2
