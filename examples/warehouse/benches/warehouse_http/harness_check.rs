//! The check that the floor measures the server, not this bench's clients: `wrk`, a load
//! generator in C, sends the same requests to the same floor server with as many connections
//! from one thread, in rounds alternating with the bench's own clients. When `wrk` is not
//! installed (`apt-get install wrk`), the section says the check did not run.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use switchyard_bench_support::target_dir;

/// `wrk`'s script: every request a `POST` with the bench's JSON body.
const SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"quantity":1}'
wrk.headers["Content-Type"] = "application/json"
"#;

/// Requests per second `wrk` reaches against `address` with `clients` connections from one
/// thread for `length`, or `None` when `wrk` is not installed or its output has no rate.
pub(crate) fn wrk_rate(address: SocketAddr, clients: usize, length: Duration) -> Option<f64> {
    let script = target_dir()
        .join("switchyard-bench-scratch")
        .join("wrk-post.lua");
    std::fs::create_dir_all(script.parent()?).ok()?;
    std::fs::write(&script, SCRIPT).ok()?;
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{clients}")])
        .arg(format!("-d{}s", length.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(format!(
            "http://{address}/warehouse/products/bench-0/increase"
        ))
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}
