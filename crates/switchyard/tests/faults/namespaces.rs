//! A private network of Linux network namespaces the test creates and removes itself: one
//! namespace per host, each joined by a veth pair to a bridge in a hub namespace. Addresses are
//! 10.213.0.x inside these namespaces only, so no packet can reach any other machine or the
//! host's own network. A host's link is cut by setting its hub end down (nothing passes, and
//! no connection is reset: a partition, as a cut cable looks to TCP) and restored by setting it
//! up.

use std::net::Ipv4Addr;
use std::process::Command;

/// What every namespace of these tests is named after, followed by the test process's id, so
/// that concurrent runs do not collide and leftovers of dead runs can be found.
const PREFIX: &str = "syfault";

/// The hosts' subnet: 10.213.0.0/24, inside the test's namespaces only.
const SUBNET: [u8; 3] = [10, 213, 0];

/// Why a network could not be built.
#[derive(Debug)]
pub(crate) struct NetworkError(String);

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The namespaces of one test; removed on drop (with their links and the processes' network).
pub(crate) struct Network {
    hub: String,
    hosts: Vec<String>,
}

impl Network {
    /// Creates a namespace for each of `hosts` (host `i` gets address 10.213.0.`i + 1`), all
    /// linked to one bridge. Removes the namespaces of earlier runs whose process is gone first.
    pub(crate) fn create(hosts: &[&str]) -> Result<Self, NetworkError> {
        remove_leftovers()?;
        let hub = namespace("hub");
        let mut network = Self {
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        add_namespace(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (index, host) in hosts.iter().enumerate() {
            let ns = namespace(host);
            add_namespace(&ns)?;
            network.hosts.push(ns.clone());
            let hub_end = hub_end(host);
            ip(&[
                "link", "add", &hub_end, "netns", &hub, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0", "up"])?;
            let address = format!("{}/24", address(index));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(network)
    }

    /// The namespace of `host`.
    pub(crate) fn netns(&self, host: &str) -> String {
        namespace(host)
    }

    /// Cuts `host` off: its link to the bridge goes down.
    pub(crate) fn cut(&self, host: &str) {
        ip(&["-n", &self.hub, "link", "set", &hub_end(host), "down"]).unwrap();
    }

    /// Restores `host`'s link.
    pub(crate) fn restore(&self, host: &str) {
        ip(&["-n", &self.hub, "link", "set", &hub_end(host), "up"]).unwrap();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// The address of host number `index` (from 0).
pub(crate) fn address(index: usize) -> Ipv4Addr {
    let [a, b, c] = SUBNET;
    Ipv4Addr::new(a, b, c, u8::try_from(index + 1).unwrap())
}

fn namespace(host: &str) -> String {
    format!("{PREFIX}{}-{host}", std::process::id())
}

/// The hub's end of `host`'s link (interface names have at most 15 bytes).
fn hub_end(host: &str) -> String {
    format!("v-{host}")
}

fn add_namespace(ns: &str) -> Result<(), NetworkError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])
}

/// Removes every namespace named by a run of these tests whose process no longer exists.
fn remove_leftovers() -> Result<(), NetworkError> {
    let listed = run(&["netns", "list"])?;
    for line in listed.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !std::path::Path::new("/proc").join(pid).exists() {
            ip(&["netns", "del", name])?;
        }
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    run(args).map(drop)
}

fn run(args: &[&str]) -> Result<String, NetworkError> {
    let output = Command::new("ip").args(args).output().map_err(|error| {
        NetworkError(format!(
            "cannot run `ip` ({error}): the partition tests need iproute2 \
             (apt-get install iproute2) and root on Linux to create network namespaces"
        ))
    })?;
    if !output.status.success() {
        return Err(NetworkError(format!(
            "`ip {}` failed ({}): {}; the partition tests need root (CAP_NET_ADMIN and \
             CAP_SYS_ADMIN) on Linux to create network namespaces and veth links",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
