-- Checkpoints and leases of switchyard-projections. `position` is the global position a
-- projection has processed through (0: none). A lease (`holder`, `lease_until`) says which
-- runner may move it on until when; `generation` grows each time the lease changes hands, and
-- every fenced write names the generation it was granted in. Times are microseconds since the
-- Unix epoch; `updated_at` is when the checkpoint was last saved or reset.
CREATE TABLE checkpoints (
    name        text   PRIMARY KEY,
    position    bigint NOT NULL,
    generation  bigint NOT NULL,
    holder      text,
    lease_until bigint,
    updated_at  bigint
);
