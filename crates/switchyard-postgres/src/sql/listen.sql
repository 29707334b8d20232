-- The channel every process's notifier (notify.sql) sends on after its appends commit.
LISTEN switchyard_events
