//! The cluster as the messaging crate sees it: the [`RemoteNodes`] a node dispatches through.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_messaging::remote::{Hop, RemoteError, RemoteNodes};
use switchyard_messaging::{Message, NodeId, ReplyTo, Response};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cluster::{Inner, lock};
use crate::connection::{Connection, Fate, Ticket};
use crate::frame::{Frame, Verdict};

pub(crate) struct Link {
    pub(crate) inner: Weak<Inner>,
}

fn stopped() -> RemoteError {
    RemoteError::NotDelivered {
        reason: "this node's cluster has stopped".into(),
    }
}

/// Forgets a pending request when its caller stops waiting, however it stops.
struct Pending<'a, T> {
    map: &'a std::sync::Mutex<std::collections::HashMap<u64, oneshot::Sender<T>>>,
    request: u64,
}

impl<T> Drop for Pending<'_, T> {
    fn drop(&mut self) {
        lock(self.map).remove(&self.request);
    }
}

/// Tells the node running a call to stop when the caller stops waiting before the reply came:
/// on a timeout here, or when the dispatcher gives up on the call at its own deadline.
struct CancelUnlessAnswered {
    inner: Arc<Inner>,
    node: NodeId,
    request: u64,
    answered: bool,
}

impl Drop for CancelUnlessAnswered {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Some(connection) = self.inner.live_connection(&self.node) else {
            return;
        };
        let cancel = Frame::Cancel {
            reply_to: self.inner.me.clone(),
            request: self.request,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = connection.send(&cancel).await;
            });
        }
    }
}

fn remaining_micros(deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    u64::try_from(left.as_micros()).unwrap_or(u64::MAX)
}

/// The connection to `node`, made within the caller's deadline.
async fn reach(
    inner: &Arc<Inner>,
    node: &NodeId,
    deadline: Instant,
) -> Result<Connection, RemoteError> {
    tokio::time::timeout_at(deadline, inner.connection_to(node))
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

/// What came of waiting for the answer to a frame sent on a connection.
enum Waited<T> {
    Answer(Result<T, oneshot::error::RecvError>),
    /// The connection ended first, and what became of the frame.
    Lost(Fate),
    TimedOut,
}

/// Waits for `answer` until `deadline`, or until the connection that carried `ticket` ends (an
/// answer read before it ended still counts).
async fn wait_for_answer<T>(
    answer: &mut oneshot::Receiver<T>,
    connection: &Connection,
    ticket: Ticket,
    deadline: Instant,
) -> Waited<T> {
    tokio::select! {
        biased;
        answer = &mut *answer => Waited::Answer(answer),
        fate = connection.lost(ticket) => match answer.try_recv() {
            Ok(answer) => Waited::Answer(Ok(answer)),
            Err(_) => Waited::Lost(fate),
        },
        () = tokio::time::sleep_until(deadline) => Waited::TimedOut,
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

impl RemoteNodes for Link {
    fn providers(&self, service: &str) -> Vec<NodeId> {
        self.inner
            .upgrade()
            .map(|inner| inner.usable_providers(service))
            .unwrap_or_default()
    }

    fn members(&self) -> Vec<NodeId> {
        self.inner
            .upgrade()
            .map(|inner| inner.connected_members())
            .unwrap_or_default()
    }

    fn invoke(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, RemoteError>> {
        let inner = self.inner.clone();
        async move {
            let inner = inner.upgrade().ok_or_else(stopped)?;
            let connection = reach(&inner, &node, deadline).await?;
            let request = inner.next_request();
            let (answer, reply) = oneshot::channel();
            lock(&inner.calls).insert(request, answer);
            let _pending = Pending {
                map: &inner.calls,
                request,
            };
            let mut message = message;
            message.set_reply_to(Some(ReplyTo {
                node: inner.me.clone(),
                request_id: request,
            }));
            let frame = Frame::Call {
                reply_to: inner.me.clone(),
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
                inner: inner.clone(),
                node: node.clone(),
                request,
                answered: false,
            };
            let ticket = match send_by(&connection, &frame, deadline).await {
                Ok(ticket) => ticket,
                Err(error) => {
                    if matches!(error, RemoteError::NotDelivered { .. }) {
                        // Refused before it was queued: nothing runs there.
                        cancel.answered = true;
                    }
                    return Err(error);
                }
            };
            let mut reply = reply;
            match wait_for_answer(&mut reply, &connection, ticket, deadline).await {
                Waited::Answer(Ok(reply)) => {
                    cancel.answered = true;
                    Ok(reply)
                }
                Waited::Answer(Err(_)) => Err(RemoteError::Failed {
                    reason: "this node's cluster stopped while waiting".into(),
                }),
                Waited::Lost(fate) => {
                    // Never sent: nothing runs there, nothing to cancel.
                    cancel.answered = fate == Fate::NeverSent;
                    Err(lost(&cancel.node, "call", fate))
                }
                Waited::TimedOut => Err(RemoteError::TimedOut),
            }
        }
        .boxed()
    }

    fn authorize(
        &self,
        node: NodeId,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Result<(), Response>, RemoteError>> {
        let inner = self.inner.clone();
        async move {
            let inner = inner.upgrade().ok_or_else(stopped)?;
            let connection = reach(&inner, &node, deadline).await?;
            let request = inner.next_request();
            let (answer, verdict) = oneshot::channel();
            lock(&inner.authorizations).insert(request, answer);
            let _pending = Pending {
                map: &inner.authorizations,
                request,
            };
            let service = message.service().to_owned();
            let ticket = send_by(
                &connection,
                &Frame::Authorize { request, message },
                deadline,
            )
            .await?;
            let mut verdict = verdict;
            let verdict = match wait_for_answer(&mut verdict, &connection, ticket, deadline).await {
                Waited::Answer(verdict) => verdict,
                Waited::Lost(fate) => return Err(lost(&node, "question", fate)),
                Waited::TimedOut => return Err(RemoteError::TimedOut),
            };
            match verdict {
                Ok(Verdict::Allowed) => Ok(Ok(())),
                Ok(Verdict::Denied(response)) => Ok(Err(response)),
                Ok(Verdict::Unavailable) => Ok(Err(Response::ServiceUnavailable(service))),
                Err(_) => Err(RemoteError::Failed {
                    reason: "this node's cluster stopped while waiting".into(),
                }),
            }
        }
        .boxed()
    }

    fn announce(&self, public_services: Vec<String>) {
        // The latest list wins: one announcer task publishes whatever is newest, so two
        // registrations in a row cannot be published in the wrong order.
        if let Some(inner) = self.inner.upgrade() {
            inner.services.send_replace(public_services);
        }
    }
}

/// Keeps a connection to `peer` up while it is a member, redialing after the reconnect
/// backoff when an attempt fails (see [`Inner::connection_to`]).
pub(crate) fn keep_connected(inner: &Arc<Inner>, peer: NodeId) {
    // A member seen leaving and coming back keeps its one task.
    if !lock(&inner.kept).insert(peer.clone()) {
        return;
    }
    /// Lets another task keep the peer once this one ends, however it ends.
    struct Kept(std::sync::Weak<Inner>, NodeId);
    impl Drop for Kept {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                lock(&inner.kept).remove(&self.1);
            }
        }
    }
    let kept = Kept(Arc::downgrade(inner), peer.clone());
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let _kept = kept;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            if inner.stopped.is_cancelled() || !inner.members.load().by_id.contains_key(&peer) {
                return;
            }
            match inner.connection_to(&peer).await {
                Ok(connection) => {
                    let stopped = inner.stopped.clone();
                    drop(inner);
                    tokio::select! {
                        () = connection.closed() => {}
                        () = stopped.cancelled() => return,
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    inner
                        .connection_ended(&peer, connection.established.elapsed())
                        .await;
                }
                Err(reason) => {
                    // At least a moment, so a failure that set no backoff cannot spin.
                    let delay = inner
                        .next_dial_in(&peer)
                        .await
                        .max(Duration::from_millis(10));
                    tracing::debug!(%peer, %reason, retry_in = ?delay, "cannot connect to a member");
                    let stopped = inner.stopped.clone();
                    drop(inner);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped.cancelled() => return,
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Cluster, ClusterConfig};

    /// The call's frame is queued, but the peer reads nothing, so the send is still writing
    /// when the deadline passes: the call may yet reach the peer, so a cancel is queued behind
    /// it on the same connection.
    #[tokio::test]
    async fn a_call_whose_send_timed_out_is_followed_by_a_cancel() {
        let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
        let cluster = Cluster::start(switchyard_messaging::Node::new("m"), config)
            .await
            .unwrap();
        let inner = cluster.inner.clone();
        let peer = NodeId::new("z", 1);
        let (connection, _unread) = Connection::detached(peer.clone(), peer.clone());
        inner.register(connection.clone());
        let link = Link {
            inner: Arc::downgrade(&inner),
        };
        let message = Message::new("svc").with_request(&vec![7_u8; 64 * 1024]);
        let deadline = Instant::now() + Duration::from_millis(200);
        let outcome = link.invoke(peer, message, Hop::First, deadline).await;
        assert!(matches!(outcome, Err(RemoteError::TimedOut)), "{outcome:?}");
        let followed = tokio::time::timeout(Duration::from_secs(1), async {
            while connection.queued() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            followed.is_ok(),
            "no cancel followed the call ({} frames queued)",
            connection.queued()
        );
    }
}
