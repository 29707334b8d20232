-- What an append to stream ?1 by message ?2 checks, in one step: the stream's last version,
-- soft-deleted events included (NULL: no such stream), then the last version that message ?2
-- recorded in it and a soft delete did not hide (NULL if none; an empty message id matches
-- nothing), as `last_version.sql` and `find_message.sql` find them. Each is a subquery of its
-- own, so each keeps SQLite's one-index-probe plan for `max()`.
SELECT (SELECT max(version) FROM events WHERE stream = ?1),
       (SELECT max(version) FROM events INDEXED BY events_by_message
        WHERE message_id = ?2 AND message_id <> '' AND stream = ?1
          AND version > coalesce((SELECT hidden_through FROM tombstones WHERE stream = ?1), -1))
