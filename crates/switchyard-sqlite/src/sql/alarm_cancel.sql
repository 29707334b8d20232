-- Removes alarm ?1, whoever holds it.
DELETE FROM alarms WHERE id = ?1
