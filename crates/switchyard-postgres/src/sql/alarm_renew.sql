UPDATE alarms SET lease_until = $3 WHERE id = $1 AND holder = $2
