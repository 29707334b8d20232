-- Forgets projection ?1's parked event at position ?2.
DELETE FROM parked_events WHERE projection = ?1 AND position = ?2
