-- The listening connection's schema ($1) alone on the search path, as on pooled connections.
SELECT set_config('search_path', $1, false)
