//! The calls this node forwarded to their owner (`choose_node`), so that a caller's cancel
//! can follow them there, and so that the caller can be told at once when the connection the
//! call left on is lost; each is forgotten once its deadline has passed.
//!
//! The owner answers the caller directly, so no reply passes here to end an entry: entries
//! end at their deadline. They are kept in deadline order too, so forgetting the expired ones
//! looks only at those, never at the whole map.

use std::collections::{BTreeSet, HashMap};

use switchyard_messaging::{Message, NodeId};
use tokio::time::Instant;

use crate::connection::Ticket;

/// A caller's request: who waits for the reply, and its request id there.
type Call = (NodeId, u64);

#[derive(Default)]
pub(crate) struct Forwarded {
    owners: HashMap<Call, Entry>,
    deadlines: BTreeSet<(Instant, Call)>,
}

struct Entry {
    owner: NodeId,
    deadline: Instant,
    /// Once the call was queued: on which connection, as which frame, and the message (to
    /// answer the caller with if that connection is lost).
    sent: Option<Sent>,
}

/// A forwarded call queued on a connection to its owner.
pub(crate) struct Sent {
    pub(crate) connection: u64,
    pub(crate) ticket: Ticket,
    pub(crate) message: Message,
}

/// A forwarded call whose connection to the owner ended.
pub(crate) struct Orphan {
    pub(crate) call: Call,
    pub(crate) owner: NodeId,
    pub(crate) ticket: Ticket,
    pub(crate) message: Message,
}

impl Forwarded {
    /// Remembers that `call` went to `owner` and can be cancelled until `deadline`, and
    /// forgets the calls whose deadline is before `now`.
    pub(crate) fn insert(&mut self, call: Call, owner: NodeId, deadline: Instant, now: Instant) {
        self.expire(now);
        let entry = Entry {
            owner,
            deadline,
            sent: None,
        };
        if let Some(earlier) = self.owners.insert(call.clone(), entry) {
            self.deadlines.remove(&(earlier.deadline, call.clone()));
        }
        self.deadlines.insert((deadline, call));
    }

    /// Notes that `call` was queued as `sent` (unless it was cancelled meanwhile).
    pub(crate) fn sent(&mut self, call: &Call, sent: Sent) {
        if let Some(entry) = self.owners.get_mut(call) {
            entry.sent = Some(sent);
        }
    }

    /// The owner `call` was forwarded to, forgetting it.
    pub(crate) fn remove(&mut self, call: &Call) -> Option<NodeId> {
        let entry = self.owners.remove(call)?;
        self.deadlines.remove(&(entry.deadline, call.clone()));
        Some(entry.owner)
    }

    /// Takes the calls queued on `connection` whose deadline is after `now`, forgetting them
    /// (and those whose deadline has passed).
    pub(crate) fn take_sent_on(&mut self, connection: u64, now: Instant) -> Vec<Orphan> {
        self.expire(now);
        let calls: Vec<Call> = self
            .owners
            .iter()
            .filter(|(_, entry)| {
                entry
                    .sent
                    .as_ref()
                    .is_some_and(|s| s.connection == connection)
            })
            .map(|(call, _)| call.clone())
            .collect();
        let mut orphans = Vec::with_capacity(calls.len());
        for call in calls {
            let Some(entry) = self.owners.remove(&call) else {
                continue;
            };
            self.deadlines.remove(&(entry.deadline, call.clone()));
            if let Some(sent) = entry.sent {
                orphans.push(Orphan {
                    call,
                    owner: entry.owner,
                    ticket: sent.ticket,
                    message: sent.message,
                });
            }
        }
        orphans
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

    /// The calls sent on a connection are taken when it ends, once; those sent on another,
    /// not yet sent, or past their deadline stay out.
    #[test]
    fn the_calls_sent_on_a_lost_connection_are_taken_once() {
        let caller = NodeId::new("caller", 1);
        let owner = NodeId::new("owner", 1);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut forwarded = Forwarded::default();
        let sent = |connection, ticket| Sent {
            connection,
            ticket: Ticket::at(ticket),
            message: Message::new("svc"),
        };
        for request in 1..=4 {
            forwarded.insert((caller.clone(), request), owner.clone(), at(100), start);
        }
        forwarded.insert((caller.clone(), 5), owner.clone(), at(10), start);
        forwarded.sent(&(caller.clone(), 1), sent(7, 0));
        forwarded.sent(&(caller.clone(), 2), sent(7, 1));
        forwarded.sent(&(caller.clone(), 3), sent(8, 0));
        forwarded.sent(&(caller.clone(), 5), sent(7, 2));
        let mut taken: Vec<u64> = forwarded
            .take_sent_on(7, at(50))
            .into_iter()
            .map(|orphan| orphan.call.1)
            .collect();
        taken.sort_unstable();
        assert_eq!(taken, [1, 2], "sent on 7 and still running");
        assert!(forwarded.take_sent_on(7, at(50)).is_empty(), "taken once");
        assert_eq!(forwarded.len(), 2, "3 (on 8) and 4 (not sent) stay");
        assert_eq!(forwarded.remove(&(caller, 4)), Some(owner));
    }
}
