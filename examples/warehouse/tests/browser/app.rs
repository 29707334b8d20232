//! The warehouse under test: started in this process on `127.0.0.1:0`, on a fresh SQLite file.

use std::time::Duration;

use tempfile::TempDir;
use warehouse::{Config, Database, Mode, Server};

/// A running warehouse; stopped, and its file removed, on drop.
pub(crate) struct Running {
    url: String,
    _server: Server,
    _dir: TempDir,
}

impl Running {
    /// The page's URL.
    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }
}

/// Starts a warehouse in `mode` on a new SQLite file.
pub(crate) async fn start(mode: Mode) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(mode, Database::Sqlite(dir.path().join("warehouse.db")));
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Far above what any request takes, so only a fault reaches it.
    config.timeout = Duration::from_secs(30);
    let (address, server) = warehouse::serve(config).await.unwrap();
    Running {
        url: format!("http://{address}/"),
        _server: server,
        _dir: dir,
    }
}
