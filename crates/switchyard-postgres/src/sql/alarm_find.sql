SELECT due, holder, lease_until FROM alarms WHERE id = $1
