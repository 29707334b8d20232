-- The stream's last version and the versions hidden by a soft delete, if it exists.
SELECT last_version, hidden_through FROM streams WHERE stream = $1
