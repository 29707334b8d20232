//! Placement: which node runs the commands of one aggregate.

use std::hash::{Hash, Hasher};

use switchyard_messaging::NodeId;

/// The node that owns `key` among `nodes`, by rendezvous (highest random weight) hashing:
/// every node scores the key, the highest score wins. While the set of nodes is stable a key
/// always lands on the same node; when a node leaves, only its keys move, each to its
/// runner-up; when one joins, it takes about `1/n` of the keys. `None` for no nodes.
///
/// ```
/// use switchyard_cluster::placement::owner;
/// use switchyard_messaging::NodeId;
///
/// let nodes = [NodeId::new("a", 1), NodeId::new("b", 1), NodeId::new("c", 1)];
/// let first = owner("account-42", &nodes).unwrap().clone();
/// assert_eq!(owner("account-42", &nodes), Some(&first));
/// let rest: Vec<_> = nodes.iter().filter(|n| **n != first).cloned().collect();
/// assert_ne!(owner("account-42", &rest), Some(&first));
/// ```
pub fn owner<'a>(key: &str, nodes: &'a [NodeId]) -> Option<&'a NodeId> {
    nodes.iter().max_by_key(|node| (score(key, node), *node))
}

/// A hash of (node, key) that every node computes alike: a fixed-seed hasher, not a
/// per-process random one.
fn score(key: &str, node: &NodeId) -> u64 {
    let mut hasher = Fnv::default();
    node.name().hash(&mut hasher);
    node.incarnation().hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

/// FNV-1a, 64 bits: stable across processes, versions and platforms, which placement needs
/// (every node must compute the same owner), and plenty for spreading keys.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Mix the bits so nearby inputs spread over the whole range.
        let mut x = self.0 ^ 0xcbf2_9ce4_8422_2325;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| NodeId::new(format!("node-{i}"), 7))
            .collect()
    }

    #[test]
    fn keys_spread_and_only_a_departed_nodes_keys_move() {
        let all = nodes(4);
        let keys: Vec<String> = (0..4_000).map(|i| format!("account-{i}")).collect();
        let before: Vec<NodeId> = keys
            .iter()
            .map(|k| owner(k, &all).unwrap().clone())
            .collect();
        for node in &all {
            let share = before.iter().filter(|o| *o == node).count();
            assert!(
                (700..1_300).contains(&share),
                "{node} owns {share} of 4,000"
            );
        }
        let gone = &all[1];
        let rest: Vec<NodeId> = all.iter().filter(|n| *n != gone).cloned().collect();
        for (key, old) in keys.iter().zip(&before) {
            let new = owner(key, &rest).unwrap();
            if old != gone {
                assert_eq!(new, old, "{key} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn no_nodes_no_owner() {
        assert_eq!(owner("k", &[]), None);
    }
}
