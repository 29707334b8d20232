-- Rolls the writer's batch transaction back.
ROLLBACK
