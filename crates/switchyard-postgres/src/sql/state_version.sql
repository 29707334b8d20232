SELECT version FROM states WHERE stream = $1
