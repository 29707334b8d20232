//! `warehouse`: the warehouse web app. `cargo run -p warehouse` serves it on
//! <http://127.0.0.1:8080/> in mode `persisted-sync` on a new SQLite file; `--help` lists the
//! options, and `warehouse project` runs the product list's projection in a process of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use warehouse::{Config, Database, Mode, Projector};

/// The warehouse of elixir_cqrs_example on Switchyard.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How commands, events and the product list meet.
    #[arg(long, value_enum, default_value_t = Mode::PersistedSync, global = true)]
    mode: Mode,
    /// The PostgreSQL database (`postgres://user:password@host:port/database`); a SQLite file
    /// when absent.
    #[arg(long, global = true, conflicts_with = "sqlite")]
    database_url: Option<String>,
    /// The PostgreSQL schema holding the events and the product list.
    #[arg(long, default_value = "warehouse", global = true)]
    schema: String,
    /// The SQLite file (created if missing); a new file in the temporary directory when absent.
    #[arg(long, global = true)]
    sqlite: Option<PathBuf>,
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    listen: SocketAddr,
    /// Where the projection runs in mode persisted-async: in the server, or in a separate
    /// `warehouse project` process.
    #[arg(long, value_enum, default_value_t = Projector::InProcess, global = true)]
    projector: Projector,
    /// How long a projector's lease keeps others out, in milliseconds: how long a killed
    /// projector's successor waits.
    #[arg(long, default_value_t = 5000, global = true)]
    lease_ttl_ms: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the web app (the default).
    Serve,
    /// Run the product list's projection alone (mode persisted-async, --projector separate in
    /// the server), until interrupted.
    Project,
}

fn database(cli: &Cli) -> Result<Database, String> {
    if cli.mode == Mode::MemorySync {
        return Ok(Database::Memory);
    }
    if let Some(url) = &cli.database_url {
        return Ok(Database::Postgres {
            url: url.clone(),
            schema: cli.schema.clone(),
        });
    }
    if let Some(path) = &cli.sqlite {
        return Ok(Database::Sqlite(path.clone()));
    }
    if matches!(cli.command, Some(Command::Project)) {
        return Err("`warehouse project` follows the server's database: give it the same --sqlite FILE or --database-url".to_owned());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|error| error.to_string())?;
    Ok(Database::Sqlite(
        std::env::temp_dir().join(format!("warehouse-{}.db", stamp.as_millis())),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("warehouse: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let database = database(&cli)?;
    let mut config = Config::new(cli.mode, database);
    config.listen = cli.listen;
    config.projector = cli.projector;
    config.lease_ttl = Duration::from_millis(cli.lease_ttl_ms);
    let place = config.database.to_string();
    if let Some(Command::Project) = cli.command {
        let projection = warehouse::project(config).await?;
        println!("warehouse projector: following {place}; stop it with Ctrl-C");
        shutdown_signal().await;
        projection.stop().await?;
        return Ok(());
    }
    let mode = config.mode.name();
    let (address, server) = warehouse::serve(config).await?;
    println!("warehouse ({mode}, {place}) serving on http://{address}/");
    shutdown_signal().await;
    println!("warehouse: stopping");
    server.shutdown().await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        () = interrupted => {}
        () = terminated => {}
    }
}
