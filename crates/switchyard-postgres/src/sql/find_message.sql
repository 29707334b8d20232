-- The last visible version message $2 recorded in stream $1.
SELECT max(e.version)
FROM events e
JOIN streams s ON s.stream = e.stream
WHERE e.stream = $1
  AND e.message_id = $2
  AND e.message_id <> ''
  AND e.closes_append
  AND e.version > s.hidden_through
