-- Moves alarm ?1 to ?3 with message ?4 and releases its lease, if holder ?2 holds it.
UPDATE alarms SET due = ?3, message = ?4, holder = NULL, lease_until = NULL
WHERE id = ?1 AND holder = ?2
