-- Opens the writer's batch transaction, taking the write lock at once.
BEGIN IMMEDIATE
