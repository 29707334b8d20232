-- Wakes subscriptions: every statement that inserts events notifies channel
-- `switchyard_events` with the schema and the greatest position it wrote
-- ("<schema> <position>"). The notification is sent when the transaction commits, and never if
-- it rolls back. It is a wake-up only: listeners read through read_all's gap-safe order, which
-- waits for older transactions still running, so a late commit is never skipped.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    SELECT max(position) INTO newest FROM inserted;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('switchyard_events', TG_TABLE_SCHEMA || ' ' || newest);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION events_notify();
