-- Ends the session $1 (started at $2) if it still runs, waiting up to 5 s for it to exit.
-- True when it is gone: then whatever it was committing has committed or rolled back.
SELECT coalesce(bool_and(pg_terminate_backend(pid, 5000)), true)
FROM pg_stat_activity
WHERE pid = $1
  AND backend_start IS NOT DISTINCT FROM $2
