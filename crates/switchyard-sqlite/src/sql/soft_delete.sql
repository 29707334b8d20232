-- Hides the events of stream ?1 through version ?2.
INSERT INTO tombstones (stream, hidden_through) VALUES (?1, ?2)
ON CONFLICT (stream) DO UPDATE SET hidden_through = excluded.hidden_through
