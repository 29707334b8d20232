-- Once per new connection: the store's schema ($1) alone on the search path (pg_catalog is
-- always searched first), and this session's process id and start, which tell it apart from a
-- later session that reuses the process id.
SELECT pg_backend_pid(),
       (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
       set_config('search_path', $1, false)
