-- The deliveries started for each alarm, counted by the claim that starts each one, so a
-- delivery cut short by a crash still counts and a retry limit applies to a message that kills
-- its node. Alarms saved before this migration count from 0.
ALTER TABLE alarms ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
