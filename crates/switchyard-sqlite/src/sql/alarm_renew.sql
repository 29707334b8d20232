-- Extends the lease of alarm ?1 to ?3, if holder ?2 still holds it.
UPDATE alarms SET lease_until = ?3 WHERE id = ?1 AND holder = ?2
