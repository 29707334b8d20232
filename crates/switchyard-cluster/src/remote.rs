//! Calls and authorization questions this node sends to other nodes, and their answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_messaging::remote::{Hop, RemoteError};
use switchyard_messaging::{Message, NodeId, ReplyTo, Response};
use tokio::time::Instant;

use crate::connection::{Connection, Fate, Ticket};
use crate::frame::{Body, Frame, Verdict};
use crate::peers::Peers;
use crate::pending::{Pending, Waited};

/// The calling side of this node: sends calls and questions to other nodes and hands each
/// answer to the caller waiting for it.
pub(crate) struct Caller {
    me: NodeId,
    peers: Arc<Peers>,
    calls: Pending<Reply>,
    questions: Pending<Verdict>,
    replies_received: AtomicU64,
}

/// A reply as it reaches the call waiting for it.
enum Reply {
    /// Read from `from` (the connection it came on, which is not the call's own when the call
    /// was forwarded): its message, still encoded, is decoded by the call.
    Read { body: Body, from: Connection },
    /// Made on this node: a call of this node that was forwarded back to it.
    Here(Message),
}

/// Tells the node running a call to stop when the caller stops waiting before the reply came:
/// on a timeout here, or when the dispatcher gives up on the call at its own deadline.
struct CancelUnlessAnswered<'a> {
    peers: &'a Peers,
    me: &'a NodeId,
    node: &'a NodeId,
    request: u64,
    answered: bool,
}

impl CancelUnlessAnswered<'_> {
    /// Nothing runs there (any more): no cancel.
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for CancelUnlessAnswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.peers
            .send_cancel(self.node, self.me.clone(), self.request);
    }
}

/// What is left of `deadline`, in the microseconds a call frame carries.
pub(crate) fn remaining_micros(deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    u64::try_from(left.as_micros()).unwrap_or(u64::MAX)
}

/// The connection to `node`, made within the caller's deadline.
async fn reach(peers: &Peers, node: &NodeId, deadline: Instant) -> Result<Connection, RemoteError> {
    tokio::time::timeout_at(deadline, peers.connection_to(node))
        .await
        .map_err(|_| RemoteError::TimedOut)?
        .map_err(|reason| RemoteError::NotDelivered { reason })
}

/// Sends `frame` within the caller's deadline.
async fn send_by(
    connection: &Connection,
    frame: &Frame,
    deadline: Instant,
) -> Result<Ticket, RemoteError> {
    match tokio::time::timeout_at(deadline, connection.send(frame)).await {
        Ok(Ok(ticket)) => Ok(ticket),
        Ok(Err(error)) => Err(RemoteError::NotDelivered {
            reason: error.to_string(),
        }),
        // The peer stopped reading: whether the frame left is unknown.
        Err(_) => Err(RemoteError::TimedOut),
    }
}

/// The error of a `what` (a call, a question) whose connection to `node` ended before its
/// answer came. No cancel can follow a call that may have been received: the connection it
/// would travel on is gone, and none is dialed for it, so it may still run to its end on the
/// provider (if the provider is alive); its reply then goes nowhere.
fn lost(node: &NodeId, what: &str, fate: Fate) -> RemoteError {
    match fate {
        Fate::NeverSent => RemoteError::NotDelivered {
            reason: format!("the connection to {node} closed before the {what} was sent"),
        },
        Fate::MaybeReceived => RemoteError::Failed {
            reason: format!(
                "the connection to {node} was lost after the {what} was sent; what came of it there is unknown"
            ),
        },
    }
}

impl Caller {
    pub(crate) fn new(me: NodeId, peers: Arc<Peers>) -> Self {
        Self {
            me,
            peers,
            calls: Pending::default(),
            questions: Pending::default(),
            replies_received: AtomicU64::new(0),
        }
    }

    /// Runs `message` on `node` and waits for its reply until `deadline`.
    pub(crate) async fn invoke(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> Result<Message, RemoteError> {
        let connection = reach(&self.peers, &node, deadline).await?;
        let mut waiter = self.calls.register();
        let request = waiter.request();
        let mut message = message;
        message.set_reply_to(Some(ReplyTo {
            node: self.me.clone(),
            request_id: request,
        }));
        let frame = Frame::Call {
            reply_to: self.me.clone(),
            request,
            hop: hop.into(),
            remaining_micros: remaining_micros(deadline),
            message,
        };
        let _outstanding = connection.outstanding();
        // Set up before the send: a send that times out may have queued the call, which
        // may then run there. The cancel is queued behind it on the same connection (one
        // for a call the peer never saw is ignored).
        let mut cancel = CancelUnlessAnswered {
            peers: &self.peers,
            me: &self.me,
            node: &node,
            request,
            answered: false,
        };
        let ticket = match send_by(&connection, &frame, deadline).await {
            Ok(ticket) => ticket,
            Err(error) => {
                if matches!(error, RemoteError::NotDelivered { .. }) {
                    // Refused before it was queued: nothing runs there.
                    cancel.answered();
                }
                return Err(error);
            }
        };
        match waiter.wait(connection.lost(ticket), deadline).await {
            Waited::Answer(reply) => {
                cancel.answered();
                match reply {
                    Reply::Here(reply) => Ok(reply),
                    Reply::Read { body, from } => {
                        from.decode_body(&body).ok_or_else(|| RemoteError::Failed {
                            reason: format!(
                                "the reply from {} was malformed; the connection it came on is closed",
                                from.peer
                            ),
                        })
                    }
                }
            }
            Waited::Lost(fate) => {
                if fate == Fate::NeverSent {
                    // Nothing runs there, nothing to cancel.
                    cancel.answered();
                }
                Err(lost(&node, "call", fate))
            }
            Waited::TimedOut => Err(RemoteError::TimedOut),
        }
    }

    /// Asks `node` whether `message` is authorized there, waiting until `deadline`.
    pub(crate) async fn authorize(
        &self,
        node: NodeId,
        message: Message,
        deadline: Instant,
    ) -> Result<Result<(), Response>, RemoteError> {
        let connection = reach(&self.peers, &node, deadline).await?;
        let mut waiter = self.questions.register();
        let request = waiter.request();
        let service = message.service().to_owned();
        let ticket = send_by(
            &connection,
            &Frame::Authorize { request, message },
            deadline,
        )
        .await?;
        match waiter.wait(connection.lost(ticket), deadline).await {
            Waited::Answer(Verdict::Allowed) => Ok(Ok(())),
            Waited::Answer(Verdict::Denied(response)) => Ok(Err(response)),
            Waited::Answer(Verdict::Unavailable) => Ok(Err(Response::ServiceUnavailable(service))),
            Waited::Lost(fate) => Err(lost(&node, "question", fate)),
            Waited::TimedOut => Err(RemoteError::TimedOut),
        }
    }

    /// A reply came on `from` for this node's call `request`: hands its body to the caller,
    /// which decodes it, if it still waits; else gives it back.
    pub(crate) fn reply_received(
        &self,
        request: u64,
        body: Body,
        from: &Connection,
    ) -> Result<(), Body> {
        self.replies_received.fetch_add(1, Ordering::Relaxed);
        let reply = Reply::Read {
            body,
            from: from.clone(),
        };
        match self.calls.complete(request, reply) {
            Err(Reply::Read { body, .. }) => Err(body),
            _ => Ok(()),
        }
    }

    /// A call of this node was forwarded back to it and ran here: hands its reply to the
    /// caller, if it still waits.
    pub(crate) fn reply_here(&self, request: u64, reply: Message) {
        let _ = self.calls.complete(request, Reply::Here(reply));
    }

    /// The verdict on this node's question `request` came.
    pub(crate) fn verdict_received(&self, request: u64, verdict: Verdict) {
        let _ = self.questions.complete(request, verdict);
    }

    /// How many calls wait for their reply.
    #[cfg(test)]
    pub(crate) fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// How many replies this node received.
    pub(crate) fn replies_received(&self) -> u64 {
        self.replies_received.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::peers::fakes::{Unreachable, peers};

    fn caller() -> Caller {
        let peers = peers(Unreachable::default());
        Caller::new(NodeId::new("m", 1), Arc::new(peers))
    }

    /// The call's frame is queued, but the peer reads nothing, so the send is still writing
    /// when the deadline passes: the call may yet reach the peer, so a cancel is queued behind
    /// it on the same connection.
    #[tokio::test(start_paused = true)]
    async fn a_call_whose_send_timed_out_is_followed_by_a_cancel() {
        let caller = caller();
        let peer = NodeId::new("z", 1);
        let (connection, _unread) = Connection::detached(peer.clone(), peer.clone());
        caller.peers.register(connection.clone());
        let message = Message::new("svc").with_request(&vec![7_u8; 64 * 1024]);
        let deadline = Instant::now() + Duration::from_millis(200);
        let outcome = caller.invoke(peer, message, Hop::First, deadline).await;
        assert!(matches!(outcome, Err(RemoteError::TimedOut)), "{outcome:?}");
        assert_eq!(caller.calls.len(), 0, "the call was forgotten");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(connection.queued(), 2, "no cancel followed the call");
    }
}
