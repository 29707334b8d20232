-- The notifying connection commits without waiting for the disk: its transactions write
-- nothing but the notification, and a notification lost in a crash is made up by listeners,
-- which read the head again when they connect.
SELECT set_config('synchronous_commit', 'off', false)
