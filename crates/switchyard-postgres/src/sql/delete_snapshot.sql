DELETE FROM snapshots WHERE stream = $1
