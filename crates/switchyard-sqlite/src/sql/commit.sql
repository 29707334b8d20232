-- Commits the writer's batch transaction.
COMMIT
