//! The store's schema, built by numbered migrations (`migrations/*.sql` in this crate).
//!
//! A run takes a transaction-scoped advisory lock named after the schema, creates the schema
//! and the `switchyard_migrations` table if missing, applies the migrations not yet recorded
//! there, records them, and commits: all or nothing. Two processes migrating at once take
//! turns on the lock; the second finds everything applied and does nothing.

use tokio_postgres::Client;

use crate::PostgresError;

/// One numbered change of the schema.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only: a released migration never changes.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "alarms",
        sql: include_str!("../migrations/0002_alarms.sql"),
    },
    Migration {
        version: 3,
        name: "alarm_attempts",
        sql: include_str!("../migrations/0003_alarm_attempts.sql"),
    },
    Migration {
        version: 4,
        name: "checkpoints",
        sql: include_str!("../migrations/0004_checkpoints.sql"),
    },
    Migration {
        version: 5,
        name: "parked_events",
        sql: include_str!("../migrations/0005_parked_events.sql"),
    },
    Migration {
        version: 6,
        name: "recorded_version",
        sql: include_str!("../migrations/0006_recorded_version.sql"),
    },
    Migration {
        version: 7,
        name: "append_message_index",
        sql: include_str!("../migrations/0007_append_message_index.sql"),
    },
];

/// The latest migration this library knows.
pub(crate) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings `schema` up to date. The connection's search path must be `schema` alone.
pub(crate) async fn run(client: &mut Client, schema: &str) -> Result<(), PostgresError> {
    let database = |source| PostgresError::Database { source };
    let tx = client.transaction().await.map_err(database)?;
    tx.execute(include_str!("sql/migrate_lock.sql"), &[&schema])
        .await
        .map_err(database)?;
    let create: String = tx
        .query_one(include_str!("sql/create_schema.sql"), &[&schema])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(database)?;
    tx.batch_execute(&create).await.map_err(database)?;
    tx.batch_execute(include_str!("sql/migrations_table.sql"))
        .await
        .map_err(database)?;
    let applied: Vec<i32> = tx
        .query(include_str!("sql/applied_migrations.sql"), &[])
        .await
        .map_err(database)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(database)?;
    if let Some(&found) = applied.last()
        && found > latest()
    {
        return Err(PostgresError::NewerSchema {
            schema: schema.to_owned(),
            found,
            known: latest(),
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let failed = |source| PostgresError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            include_str!("sql/record_migration.sql"),
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
        tracing::info!(
            schema,
            migration.version,
            migration.name,
            "applied a migration"
        );
    }
    tx.commit().await.map_err(database)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1, "{}", migration.name);
        }
    }
}
