//! The serving side of this node: what it does with the calls, questions and cancels its
//! peers send.
//!
//! A call is served by a future that the serving task of the connection it came on drives
//! with the others, rather than by a task of its own, and the handler runs inside that future
//! (the messaging crate polls it inline, catching its panics): a task per call would add a
//! spawn and two wake-ups to every call.
//!
//! A caller's cancel aborts the handler of its call. Most handlers finish within their first
//! turn, so a call is registered for cancels (an abort handle, in a table behind a lock) only
//! when its handler is still running after that turn. The serving task gives each call its
//! first turn as soon as it is read, and takes a cancel through the same queue, behind the
//! calls read before it: a cancel always finds a call that is still running (see
//! `connection::serve_calls`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, AbortRegistration, Abortable, Aborted};
use switchyard_messaging::remote::Hop;
use switchyard_messaging::{Authorization, Message, Node, NodeId, Response, Served};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::connection::{Connection, Fate, SendError, Serving};
use crate::forwarded::{Forwarded, Ids, Orphan, Sent};
use crate::frame::{Body, Frame, Verdict, WireHop};
use crate::peers::Peers;
use crate::remote::Caller;
use crate::sync::{lock, poll_once};

/// The longest deadline a call may carry: a day.
const MAX_REMAINING_MICROS: u64 = 86_400_000_000;

/// How long a reply may wait for room on its connection.
const REPLY_SEND_LIMIT: Duration = Duration::from_secs(5);

/// A caller's request: who waits for the reply, and its request id there.
type CallKey = (NodeId, u64);

/// Why a reply did not leave.
#[derive(Debug, thiserror::Error)]
enum ReplyNotSent {
    #[error("the reply has {len} bytes, more than the {max} a peer accepts (max_frame_len)")]
    TooLong { len: usize, max: usize },
    #[error("{0}")]
    Other(String),
}

/// Serves other nodes' calls on this node's [`Node`], forwards them to their owner, and
/// drains them when this node leaves.
pub(crate) struct Server {
    node: Node,
    peers: Arc<Peers>,
    /// Where a reply goes when a call of this node was forwarded back to it.
    caller: Arc<Caller>,
    /// Calls this node runs for others whose handler outlived its first turn (or that it is
    /// forwarding), by (reply-to node, request): what a cancel can reach.
    running: Mutex<HashMap<CallKey, AbortHandle>>,
    /// Calls this node forwarded, so a cancel can follow them.
    forwarded: Mutex<Forwarded>,
    in_flight: AtomicUsize,
    drained: Notify,
    /// This node is leaving: calls are declined from now on.
    stopping: AtomicBool,
    pub(crate) counters: ServingCounters,
}

/// Counters of what this node served.
#[derive(Default)]
pub(crate) struct ServingCounters {
    pub(crate) calls_served: AtomicU64,
    pub(crate) calls_forwarded: AtomicU64,
    pub(crate) replies_sent: AtomicU64,
}

/// Counts a call this node runs until it ends, also when it is aborted.
struct Running {
    server: Arc<Server>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.server.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.server.drained.notify_waiters();
        }
    }
}

/// A call whose handler outlived its first turn, registered for cancels until it ends.
struct Cancellable<'a> {
    server: &'a Server,
    key: CallKey,
}

impl Drop for Cancellable<'_> {
    fn drop(&mut self) {
        lock(&self.server.running).remove(&self.key);
    }
}

impl Server {
    pub(crate) fn new(node: Node, peers: Arc<Peers>, caller: Arc<Caller>) -> Self {
        Self {
            node,
            peers,
            caller,
            running: Mutex::new(HashMap::new()),
            forwarded: Mutex::new(Forwarded::default()),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
            stopping: AtomicBool::new(false),
            counters: ServingCounters::default(),
        }
    }

    /// Declines calls from now on; false if it already did.
    pub(crate) fn stop_taking_calls(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    /// Whether this node is leaving.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How many calls from other nodes run here now.
    pub(crate) fn running_calls(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no call from another node runs here, or `limit` has passed (logged).
    pub(crate) async fn drain(&self, limit: Duration) {
        let drained = async {
            while self.in_flight.load(Ordering::SeqCst) > 0 {
                let notified = self.drained.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(limit, drained).await.is_err() {
            tracing::warn!(
                running = self.in_flight.load(Ordering::SeqCst),
                "calls still running at the end of the drain timeout"
            );
        }
    }

    /// A call arrived on `from`, its message still encoded in `body`: comes back as the
    /// future serving it (which decodes the message), unless this node declines it.
    pub(crate) fn call(
        self: &Arc<Self>,
        from: &Connection,
        reply_to: NodeId,
        request: u64,
        hop: WireHop,
        remaining_micros: u64,
        body: Body,
    ) -> Option<Serving> {
        // A peer's number: clamp it rather than overflow the clock.
        let remaining = Duration::from_micros(remaining_micros.min(MAX_REMAINING_MICROS));
        let deadline = Instant::now()
            .checked_add(remaining)
            .unwrap_or_else(Instant::now);
        if self.is_stopping() {
            // Leaving: its reply might not get out before the connections close.
            let server = self.clone();
            let from = from.clone();
            tokio::spawn(async move {
                let Some(message) = from.decode_body(&body) else {
                    return;
                };
                let reason = format!("{} is leaving the cluster", server.node.id());
                let declined = message.return_with(Response::TryAnotherNode(reason));
                server
                    .reply_straight(&from, &reply_to, request, declined)
                    .await;
            });
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.counters.calls_served.fetch_add(1, Ordering::Relaxed);
        let running = Running {
            server: self.clone(),
        };
        let from = from.clone();
        let serving = async move {
            let server = &running.server;
            // Decoded here, where it is used, rather than on the connection's reader.
            let Some(message) = from.decode_body(&body) else {
                return;
            };
            // This future is driven by the connection's serving task; the node answers a panic
            // of the router's rules or of the handler (both run here) with an error, so none
            // unwinds into the task.
            let handler = server.node.serve_remote(message, Hop::from(hop), deadline);
            tokio::pin!(handler);
            let served = match poll_once(&mut handler.as_mut()).await {
                Poll::Ready(served) => served,
                Poll::Pending => {
                    // Still running after its first turn (which the serving task gives it
                    // before it takes any later cancel): from now on a cancel can reach it.
                    let (_registered, registration) = server.cancellable(&reply_to, request);
                    match Abortable::new(handler.as_mut(), registration).await {
                        Ok(served) => served,
                        Err(Aborted) => return,
                    }
                }
            };
            match served {
                Served::Reply(reply) => {
                    // The handler has ended: a cancel now has nothing to stop.
                    server
                        .reply_straight(&from, &reply_to, request, reply)
                        .await;
                }
                Served::NoReply => {}
                Served::Forward { node, message } => {
                    // Forwarding may wait for a dial: a cancel stops it (and follows the call
                    // to its owner if it left).
                    let (_registered, registration) = server.cancellable(&reply_to, request);
                    let forward =
                        server.forward(&from, reply_to.clone(), request, node, message, deadline);
                    let _ = Abortable::new(forward, registration).await;
                }
            }
        };
        Some(serving.boxed())
    }

    /// Registers the call `request` of `reply_to` for cancels until the guard drops: a cancel
    /// aborts what the registration is given to.
    fn cancellable(&self, reply_to: &NodeId, request: u64) -> (Cancellable<'_>, AbortRegistration) {
        let (abort, registration) = AbortHandle::new_pair();
        let key = (reply_to.clone(), request);
        lock(&self.running).insert(key.clone(), abort);
        (Cancellable { server: self, key }, registration)
    }

    /// A question arrived on `from`: is `message` authorized here? Answered on `from`.
    pub(crate) fn authorize(&self, from: &Connection, request: u64, body: Body) {
        let node = self.node.clone();
        let from = from.clone();
        tokio::spawn(async move {
            let Some(message) = from.decode_body(&body) else {
                return;
            };
            // A panic in the router's `authorize` is answered as a denial by the node.
            let verdict = match node.authorize_remote(&message) {
                Authorization::Allowed => Verdict::Allowed,
                Authorization::Denied(response) => Verdict::Denied(response),
                Authorization::ServiceUnavailable => Verdict::Unavailable,
            };
            let _ = from.send(&Frame::Authorized { request, verdict }).await;
        });
    }

    /// The caller `reply_to` stopped waiting for its request `request`: stops running it
    /// here, and tells the owner it was forwarded to.
    pub(crate) fn cancel(&self, reply_to: NodeId, request: u64) {
        let key = (reply_to, request);
        if let Some(task) = lock(&self.running).remove(&key) {
            task.abort();
            tracing::debug!(caller = %key.0, request, "call cancelled by its caller");
        }
        let owner = lock(&self.forwarded).remove(&key);
        if let Some(owner) = owner {
            self.peers.send_cancel(&owner, key.0, request);
        }
    }

    /// Sends a reply to the node waiting for it: on this connection when the caller is the
    /// peer, else straight to the caller (the call was forwarded here).
    async fn reply_straight(
        &self,
        from: &Connection,
        reply_to: &NodeId,
        request: u64,
        reply: Message,
    ) {
        if reply_to == self.node.id() {
            // Forwarded back to the node that called: answer the waiting call here.
            self.caller.reply_here(request, reply);
            return;
        }
        let frame = Frame::Reply {
            request,
            message: reply,
        };
        let sent = match self.send_reply(from, reply_to, &frame).await {
            Err(ReplyNotSent::TooLong { len, max }) => {
                // The caller would wait out its deadline for a reply that can never reach it:
                // it gets an error saying why instead, as a too-large call does.
                let Frame::Reply { message, .. } = frame else {
                    return;
                };
                let error = Response::error(format!(
                    "the reply of `{}` on {} has {len} bytes, more than the {max} a peer accepts (max_frame_len): return less, or raise max_frame_len on the calling node",
                    message.service(),
                    self.node.id()
                ));
                let refusal = message.return_with(error);
                let frame = Frame::Reply {
                    request,
                    message: refusal,
                };
                self.send_reply(from, reply_to, &frame).await
            }
            sent => sent,
        };
        match sent {
            Ok(()) => {
                self.counters.replies_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => {
                tracing::warn!(caller = %reply_to, request, %reason, "a reply could not be sent; the caller will time out");
            }
        }
    }

    /// Sends a reply frame to `reply_to`: on `from` when the caller is its peer, else on the
    /// connection to the caller.
    async fn send_reply(
        &self,
        from: &Connection,
        reply_to: &NodeId,
        frame: &Frame,
    ) -> Result<(), ReplyNotSent> {
        let connection = if from.peer == *reply_to && !from.is_closed() {
            from.clone()
        } else {
            self.peers
                .connection_to(reply_to)
                .await
                .map_err(ReplyNotSent::Other)?
        };
        // A caller that stopped reading must not hold this task forever.
        match tokio::time::timeout(REPLY_SEND_LIMIT, connection.send(frame)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(SendError::TooLong { len, max })) => Err(ReplyNotSent::TooLong { len, max }),
            Ok(Err(error)) => Err(ReplyNotSent::Other(error.to_string())),
            Err(_) => Err(ReplyNotSent::Other("the caller stopped reading".to_owned())),
        }
    }

    /// Passes a call on to the node `choose_node` picked, with the caller's reply address:
    /// the owner answers the caller directly. This node is not on the reply path, so it
    /// remembers the call (its ids, not its payload) until its deadline: if the connection it left on is lost first,
    /// nothing would ever answer the caller, so this node does (see
    /// [`Server::connection_ended`]).
    async fn forward(
        &self,
        from: &Connection,
        reply_to: NodeId,
        request: u64,
        owner: NodeId,
        message: Message,
        deadline: Instant,
    ) {
        let frame = Frame::Call {
            reply_to: reply_to.clone(),
            request,
            hop: WireHop::Forwarded,
            remaining_micros: crate::remote::remaining_micros(deadline),
            message,
        };
        // Remembered before the send, so a cancel that arrives meanwhile follows the call.
        let call = (reply_to.clone(), request);
        lock(&self.forwarded).insert(call.clone(), owner.clone(), deadline, Instant::now());
        let sent = match self.peers.connection_to(&owner).await {
            Ok(connection) => match connection.send(&frame).await {
                Ok(ticket) => Ok((connection.id, ticket)),
                Err(error) => Err(error.to_string()),
            },
            Err(reason) => Err(reason),
        };
        let Frame::Call { message, .. } = frame else {
            return;
        };
        match sent {
            Ok((connection, ticket)) => {
                self.counters
                    .calls_forwarded
                    .fetch_add(1, Ordering::Relaxed);
                // Only the ids: the owner answers the caller, so the message's payload would
                // be kept here for nothing until its deadline.
                let sent = Sent {
                    connection,
                    ticket,
                    ids: Ids::of(&message),
                };
                lock(&self.forwarded).sent(&call, sent);
            }
            Err(reason) => {
                lock(&self.forwarded).remove(&call);
                tracing::warn!(%owner, %reason, "forwarding failed");
                let declined = message.return_with(Response::TryAnotherNode(format!(
                    "{} could not forward to its owner {owner}: {reason}",
                    self.node.id()
                )));
                self.reply_straight(from, &reply_to, request, declined)
                    .await;
            }
        }
    }

    /// `connection` has ended: when it broke, the calls this node forwarded on it, still
    /// running, can no longer be answered over it, so this node answers their callers at once
    /// (see [`Server::owner_lost`]). A connection closed on purpose (a duplicate dropped)
    /// keeps them: their owner answers over the connection kept.
    pub(crate) fn connection_ended(self: &Arc<Self>, connection: &Connection) {
        if !connection.is_broken() {
            return;
        }
        let orphans = lock(&self.forwarded).take_sent_on(connection.id, Instant::now());
        if orphans.is_empty() {
            return;
        }
        let (server, connection) = (self.clone(), connection.clone());
        tokio::spawn(async move {
            for orphan in orphans {
                if let Some(fate) = connection.outcome(orphan.ticket).await {
                    server.owner_lost(orphan, fate).await;
                }
            }
        });
    }

    /// The connection a forwarded call left on broke before the call's deadline, and no reply
    /// can come over it: tells the caller. A call that never left is declined
    /// (`TryAnotherNode`: the caller's dispatcher tries its next provider); one that may have
    /// reached the owner ends with an error saying its outcome is unknown, as a call whose own
    /// connection broke does. (Its reply may still come, if the owner lives and reaches the
    /// caller first: the caller takes whichever answer arrives first.)
    async fn owner_lost(&self, orphan: Orphan, fate: Fate) {
        let Orphan {
            call: (reply_to, request),
            owner,
            ids,
            ..
        } = orphan;
        let response = match fate {
            Fate::NeverSent => Response::TryAnotherNode(format!(
                "the connection from {} to the owner {owner} closed before the call was forwarded",
                self.node.id()
            )),
            Fate::MaybeReceived => Response::error(format!(
                "the connection from {} to the owner {owner} was lost after the call was forwarded to it; what came of it there is unknown",
                self.node.id()
            )),
        };
        let reply = ids.answer(response);
        // The caller's own connection, if it is still up; else one to it.
        match self.peers.live_connection(&reply_to) {
            Some(to_caller) => {
                self.reply_straight(&to_caller, &reply_to, request, reply)
                    .await;
            }
            None => {
                tracing::debug!(caller = %reply_to, request, "no connection to the caller of a forwarded call whose owner was lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::peers::fakes::{Unreachable, peers};

    /// A cancel that arrives while the forwarded call is still being sent to its owner finds
    /// the call, and follows it there.
    #[tokio::test(start_paused = true)]
    async fn a_cancel_arriving_while_a_call_is_forwarded_follows_it() {
        let node = Node::new("m");
        let peers = Arc::new(peers(Unreachable::default()));
        let caller = Arc::new(Caller::new(node.id().clone(), peers.clone()));
        let server = Server::new(node, peers.clone(), caller);
        let (caller, owner) = (NodeId::new("caller", 1), NodeId::new("owner", 1));
        // The owner reads nothing: the forward's send stays under way.
        let (to_owner, _unread) = Connection::detached(owner.clone(), owner.clone());
        peers.register(to_owner.clone());
        let (from_caller, _far) = Connection::detached(caller.clone(), caller.clone());
        let message = Message::new("svc").with_request(&vec![7_u8; 64 * 1024]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let forwarding = server.forward(&from_caller, caller.clone(), 7, owner, message, deadline);
        tokio::pin!(forwarding);
        let still_sending = tokio::time::timeout(Duration::from_millis(100), &mut forwarding).await;
        assert!(
            still_sending.is_err(),
            "the send did not wait for the owner"
        );
        assert_eq!(to_owner.queued(), 1);
        server.cancel(caller, 7);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(to_owner.queued(), 2, "the cancel did not follow the call");
    }
}
