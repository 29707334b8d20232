-- Removes the snapshot of stream ?1 (also part of its hard delete).
DELETE FROM snapshots WHERE stream = ?1
