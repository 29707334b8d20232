-- Leases the alarm ?1 to holder ?2 until ?3, counting ?4 attempts.
UPDATE alarms SET holder = ?2, lease_until = ?3, attempts = ?4 WHERE id = ?1
