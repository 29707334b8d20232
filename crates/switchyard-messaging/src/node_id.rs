//! Names of nodes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The identity of a node: its name plus an incarnation.
///
/// The incarnation tells two lives of one name apart: a node that restarts under the same name is
/// a new member, so replies and leases meant for its previous life are not mistaken for its own.
/// [`Node::new`](crate::Node::new) takes the start time in milliseconds as the incarnation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    #[serde(deserialize_with = "crate::shared_str::deserialize_recurring")]
    name: Arc<str>,
    incarnation: u64,
}

impl NodeId {
    /// A node id from a name and an incarnation.
    pub fn new(name: impl Into<Arc<str>>, incarnation: u64) -> Self {
        Self {
            name: name.into(),
            incarnation,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which life of the named node this is.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
