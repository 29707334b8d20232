-- Forgets every parked event of projection ?1 (its checkpoint was reset).
DELETE FROM parked_events WHERE projection = ?1
