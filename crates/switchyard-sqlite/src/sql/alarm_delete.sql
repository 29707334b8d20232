-- Removes alarm ?1, if holder ?2 holds it.
DELETE FROM alarms WHERE id = ?1 AND holder = ?2
