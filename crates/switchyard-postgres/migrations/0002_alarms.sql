-- Alarms of switchyard-scheduler: messages to deliver later. `due` and `lease_until` are
-- microseconds since the Unix epoch; `message` is the message encoded by switchyard-messaging's
-- codec. A lease (`holder`, `lease_until`) says which scheduler may deliver the alarm until when.
CREATE TABLE alarms (
    id           text   PRIMARY KEY,
    aggregate_id text   NOT NULL,
    due          bigint NOT NULL,
    message      bytea  NOT NULL,
    holder       text,
    lease_until  bigint
);

-- Windows are read by due time.
CREATE INDEX alarms_by_due ON alarms (due);

-- Cancelling by aggregate.
CREATE INDEX alarms_by_aggregate ON alarms (aggregate_id);
