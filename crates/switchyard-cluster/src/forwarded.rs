//! The calls this node forwarded to their owner (`choose_node`), so that a caller's cancel
//! can follow them there, and so that the caller can be told at once when the connection the
//! call left on is lost; each is forgotten once its deadline has passed.
//!
//! The owner answers the caller directly, so no reply passes here to end an entry: entries
//! end at their deadline. So an entry is a small record (who waits, the owner, the connection
//! and the message's ids), never the message with its payload, and the table holds at most
//! [`MAX_FORWARDED`] of them: when it is full, the entry with the earliest deadline is
//! forgotten first. Entries are kept in deadline order too, so forgetting the expired ones
//! looks only at those, never at the whole map.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use switchyard_messaging::{DryRun, Message, NodeId, Response};
use tokio::time::Instant;

use crate::connection::Ticket;

/// A caller's request: who waits for the reply, and its request id there.
type Call = (NodeId, u64);

/// The most forwarded calls remembered at once (a few hundred bytes each, plus the message's
/// ids). Beyond it the entry with the earliest deadline is forgotten: a cancel of that call no
/// longer follows it, and if its owner is lost its caller waits out its deadline.
pub(crate) const MAX_FORWARDED: usize = 100_000;

/// What answering a forwarded call's caller takes of its message: its service and ids, not
/// its request, assigns or events.
pub(crate) struct Ids {
    service: Arc<str>,
    id: Arc<str>,
    correlation_id: Arc<str>,
    causation_id: Arc<str>,
    dry_run: DryRun,
}

impl Ids {
    pub(crate) fn of(message: &Message) -> Self {
        Self {
            service: message.service().into(),
            id: message.id().into(),
            correlation_id: message.correlation_id().into(),
            causation_id: message.causation_id().into(),
            dry_run: message.dry_run(),
        }
    }

    /// A reply to the message these ids are of, with `response`.
    pub(crate) fn answer(&self, response: Response) -> Message {
        Message::new(self.service.clone())
            .with_id(self.id.clone())
            .with_correlation_id(self.correlation_id.clone())
            .with_causation_id(self.causation_id.clone())
            .with_dry_run(self.dry_run)
            .return_with(response)
    }
}

#[derive(Default)]
pub(crate) struct Forwarded {
    owners: HashMap<Call, Entry>,
    deadlines: BTreeSet<(Instant, Call)>,
}

struct Entry {
    owner: NodeId,
    deadline: Instant,
    /// Once the call was queued: on which connection, as which frame, and the message's ids
    /// (to answer the caller with if that connection is lost).
    sent: Option<Sent>,
}

/// A forwarded call queued on a connection to its owner.
pub(crate) struct Sent {
    pub(crate) connection: u64,
    pub(crate) ticket: Ticket,
    pub(crate) ids: Ids,
}

/// A forwarded call whose connection to the owner ended.
pub(crate) struct Orphan {
    pub(crate) call: Call,
    pub(crate) owner: NodeId,
    pub(crate) ticket: Ticket,
    pub(crate) ids: Ids,
}

impl Forwarded {
    /// Remembers that `call` went to `owner` and can be cancelled until `deadline`, and
    /// forgets the calls whose deadline is before `now`, and the earliest ones beyond
    /// [`MAX_FORWARDED`].
    pub(crate) fn insert(&mut self, call: Call, owner: NodeId, deadline: Instant, now: Instant) {
        self.expire(now);
        while self.owners.len() >= MAX_FORWARDED
            && !self.owners.contains_key(&call)
            && let Some((_, earliest)) = self.deadlines.pop_first()
        {
            self.owners.remove(&earliest);
        }
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
                    ids: sent.ids,
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
            ids: Ids::of(&Message::new("svc")),
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

    /// Past the limit, the calls with the earliest deadlines are forgotten first; the table
    /// never holds more.
    #[test]
    fn the_table_holds_at_most_max_forwarded_calls() {
        let caller = NodeId::new("caller", 1);
        let owner = NodeId::new("owner", 1);
        let start = Instant::now();
        let mut forwarded = Forwarded::default();
        let extra = 3_u64;
        let count = MAX_FORWARDED as u64 + extra;
        for request in 0..count {
            let deadline = start + Duration::from_secs(request + 10);
            forwarded.insert((caller.clone(), request), owner.clone(), deadline, start);
        }
        assert_eq!(forwarded.len(), MAX_FORWARDED);
        assert_eq!(
            forwarded.remove(&(caller.clone(), extra)),
            Some(owner.clone())
        );
        assert_eq!(
            forwarded.remove(&(caller.clone(), count - 1)),
            Some(owner.clone())
        );
        for request in 0..extra {
            assert_eq!(
                forwarded.remove(&(caller.clone(), request)),
                None,
                "earliest dropped"
            );
        }
    }

    /// The answer built from a forwarded call's ids names the same message, and carries none
    /// of its payload.
    #[test]
    fn an_answer_from_the_ids_carries_the_ids_and_no_payload() {
        let message = Message::new("svc")
            .with_id("m-1")
            .with_correlation_id("c-1")
            .with_causation_id("k-1")
            .with_dry_run(DryRun::Verbose)
            .with_request(&vec![7_u8; 64 * 1024])
            .assign("big", &vec![1_u8; 1024]);
        let answer = Ids::of(&message).answer(Response::TryAnotherNode("lost".into()));
        assert_eq!(
            (
                answer.service(),
                answer.id(),
                answer.correlation_id(),
                answer.causation_id()
            ),
            ("svc", "m-1", "c-1", "k-1")
        );
        assert_eq!(answer.dry_run(), DryRun::Verbose);
        assert!(answer.payload().is_none() && answer.assigns().is_empty());
        assert!(matches!(
            answer.response(),
            Some(Response::TryAnotherNode(_))
        ));
    }
}
