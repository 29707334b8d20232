//! The calls this node forwarded to their owner (`choose_node`), so that a caller's cancel
//! can follow them there; each is forgotten once its deadline has passed.
//!
//! The owner answers the caller directly, so no reply passes here to end an entry: entries
//! end at their deadline. They are kept in deadline order too, so forgetting the expired ones
//! looks only at those, never at the whole map.

use std::collections::{BTreeSet, HashMap};

use switchyard_messaging::NodeId;
use tokio::time::Instant;

/// A caller's request: who waits for the reply, and its request id there.
type Call = (NodeId, u64);

#[derive(Default)]
pub(crate) struct Forwarded {
    owners: HashMap<Call, (NodeId, Instant)>,
    deadlines: BTreeSet<(Instant, Call)>,
}

impl Forwarded {
    /// Remembers that `call` went to `owner` and can be cancelled until `deadline`, and
    /// forgets the calls whose deadline is before `now`.
    pub(crate) fn insert(&mut self, call: Call, owner: NodeId, deadline: Instant, now: Instant) {
        self.expire(now);
        if let Some((_, earlier)) = self.owners.insert(call.clone(), (owner, deadline)) {
            self.deadlines.remove(&(earlier, call.clone()));
        }
        self.deadlines.insert((deadline, call));
    }

    /// The owner `call` was forwarded to, forgetting it.
    pub(crate) fn remove(&mut self, call: &Call) -> Option<NodeId> {
        let (owner, deadline) = self.owners.remove(call)?;
        self.deadlines.remove(&(deadline, call.clone()));
        Some(owner)
    }

    /// Forgets the calls whose deadline has passed, earliest first, stopping at the first
    /// one still running.
    fn expire(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.deadlines.first()
            && *deadline <= now
        {
            if let Some((_, call)) = self.deadlines.pop_first() {
                self.owners.remove(&call);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.owners.len(), self.deadlines.len());
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_forwarded_call_is_found_until_its_deadline_and_forgotten_after() {
        let caller = NodeId::new("caller", 1);
        let (b, c) = (NodeId::new("b", 1), NodeId::new("c", 1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut forwarded = Forwarded::default();
        forwarded.insert((caller.clone(), 1), b.clone(), at(100), start);
        forwarded.insert((caller.clone(), 2), c.clone(), at(300), start);
        forwarded.insert((caller.clone(), 3), b.clone(), at(200), start);
        assert_eq!(forwarded.remove(&(caller.clone(), 3)), Some(b.clone()));
        assert_eq!(forwarded.remove(&(caller.clone(), 3)), None, "removed once");
        // Inserting later forgets what expired, and only that.
        forwarded.insert((caller.clone(), 4), c.clone(), at(400), at(150));
        assert_eq!(forwarded.len(), 2);
        assert_eq!(forwarded.remove(&(caller.clone(), 1)), None, "expired");
        assert_eq!(forwarded.remove(&(caller.clone(), 2)), Some(c.clone()));
        // The same call forwarded again keeps one entry, under its new deadline.
        forwarded.insert((caller.clone(), 4), b.clone(), at(500), at(150));
        assert_eq!(forwarded.len(), 1);
        forwarded.insert((caller.clone(), 5), b.clone(), at(900), at(450));
        assert_eq!(forwarded.len(), 2, "the new deadline of call 4 holds");
        forwarded.insert((caller.clone(), 6), b.clone(), at(900), at(600));
        assert_eq!(forwarded.len(), 2, "call 4 expired");
        assert_eq!(forwarded.remove(&(caller, 4)), None);
    }
}
