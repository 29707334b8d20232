-- The deliveries started for each alarm, counted by the claim that starts each one, so a
-- delivery cut short by a crash still counts and a retry limit applies to a message that kills
-- its node. Alarms saved before this migration get 0 here; for them (a pending retry, say) the
-- scheduler counts from the `dispatch_attempts` their message carries, whichever is larger.
ALTER TABLE alarms ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
