-- Whether the stream has an event that is not soft-deleted.
SELECT last_version > hidden_through FROM streams WHERE stream = $1
