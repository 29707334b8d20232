//! What a node does with each frame its peers send.
//!
//! A call is served by a future that the reader of the connection it came on drives with the
//! others, rather than by a task of its own: the handler already runs in its own task (the
//! messaging crate spawns it), so a second task per call would only add a wake-up. The future
//! is abortable, for a caller's cancel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use switchyard_messaging::remote::Hop;
use switchyard_messaging::{Authorization, Message, NodeId, Response, Served};
use tokio::time::Instant;

use crate::cluster::{Inner, lock};
use crate::connection::Connection;
use crate::frame::{Frame, Verdict, WireHop};

/// The longest deadline a call may carry: a day.
const MAX_REMAINING_MICROS: u64 = 86_400_000_000;

/// How long a reply may wait for room on its connection.
const REPLY_SEND_LIMIT: Duration = Duration::from_secs(5);

/// Serves a call: the reader of its connection polls it until the reply is sent.
pub(crate) type Serving = BoxFuture<'static, ()>;

/// Acts on one frame; a call comes back as the future that serves it.
pub(crate) async fn handle(inner: &Arc<Inner>, from: &Connection, frame: Frame) -> Option<Serving> {
    match frame {
        Frame::Call {
            reply_to,
            request,
            hop,
            remaining_micros,
            message,
        } => {
            // A peer's number: clamp it rather than overflow the clock.
            let remaining = Duration::from_micros(remaining_micros.min(MAX_REMAINING_MICROS));
            let deadline = Instant::now()
                .checked_add(remaining)
                .unwrap_or_else(Instant::now);
            return serve_call(inner, from, reply_to, request, hop, deadline, message);
        }
        Frame::Reply { request, message } => {
            inner
                .counters
                .replies_received
                .fetch_add(1, Ordering::Relaxed);
            if let Some(waiting) = lock(&inner.calls).remove(&request) {
                let _ = waiting.send(message);
            }
        }
        Frame::Authorize { request, message } => {
            let inner = inner.clone();
            let from = from.clone();
            tokio::spawn(async move {
                // A panic in the router's `authorize` is answered as a denial by the node.
                let verdict = match inner.node.authorize_remote(&message) {
                    Authorization::Allowed => Verdict::Allowed,
                    Authorization::Denied(response) => Verdict::Denied(response),
                    Authorization::ServiceUnavailable => Verdict::Unavailable,
                };
                let _ = from.send(&Frame::Authorized { request, verdict }).await;
            });
        }
        Frame::Authorized { request, verdict } => {
            if let Some(waiting) = lock(&inner.authorizations).remove(&request) {
                let _ = waiting.send(verdict);
            }
        }
        Frame::Cancel { reply_to, request } => cancel(inner, reply_to, request),
        Frame::Hello { .. } | Frame::Proof { .. } | Frame::Refused { .. } => {
            tracing::warn!(peer = %from.peer, kind = frame.kind(), "handshake frame on an established connection; closing it");
            from.break_off();
        }
    }
    None
}

/// Counts a call this node runs, and forgets it when it ends, also when it is aborted.
struct Running {
    inner: Arc<Inner>,
    key: (NodeId, u64),
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.inner.serving).remove(&self.key);
        if self.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.drained.notify_waiters();
        }
    }
}

fn serve_call(
    inner: &Arc<Inner>,
    from: &Connection,
    reply_to: NodeId,
    request: u64,
    hop: WireHop,
    deadline: Instant,
    message: Message,
) -> Option<Serving> {
    if inner.stopping.load(Ordering::SeqCst) {
        // Leaving: its reply might not get out before the connections close.
        let inner = inner.clone();
        let from = from.clone();
        tokio::spawn(async move {
            let reason = format!("{} is leaving the cluster", inner.me);
            let declined = message.return_with(Response::TryAnotherNode(reason));
            reply_straight(&inner, &from, &reply_to, request, declined).await;
        });
        return None;
    }
    inner.in_flight.fetch_add(1, Ordering::SeqCst);
    inner.counters.calls_served.fetch_add(1, Ordering::Relaxed);
    let running = Running {
        inner: inner.clone(),
        key: (reply_to.clone(), request),
    };
    let key = running.key.clone();
    let (abort, registration) = AbortHandle::new_pair();
    // Registered before it first runs, so it cannot end (and remove itself) before.
    lock(&inner.serving).insert(key, abort);
    let inner = inner.clone();
    let from = from.clone();
    let serving = async move {
        let _running = running;
        // This future is driven by the connection's reader; the node answers a panic of the
        // router's rules (run here) or of the handler (run in a task of its own) with an error,
        // so none unwinds into the reader.
        match inner
            .node
            .serve_remote(message, Hop::from(hop), deadline)
            .await
        {
            Served::Reply(reply) => {
                reply_straight(&inner, &from, &reply_to, request, reply).await;
            }
            Served::NoReply => {}
            Served::Forward { node, message } => {
                forward(&inner, &from, reply_to, request, node, message, deadline).await;
            }
        }
    };
    Some(Abortable::new(serving, registration).map(drop).boxed())
}

/// Sends a reply to the node waiting for it: on this connection when the caller is the peer,
/// else straight to the caller (the call was forwarded here).
async fn reply_straight(
    inner: &Arc<Inner>,
    from: &Connection,
    reply_to: &NodeId,
    request: u64,
    reply: Message,
) {
    if *reply_to == inner.me {
        // Forwarded back to the node that called: answer the waiting call here.
        if let Some(waiting) = lock(&inner.calls).remove(&request) {
            let _ = waiting.send(reply);
        }
        return;
    }
    let frame = Frame::Reply {
        request,
        message: reply,
    };
    let connection = if from.peer == *reply_to && !from.is_closed() {
        Ok(from.clone())
    } else {
        inner.connection_to(reply_to).await
    };
    let sent = match connection {
        Ok(connection) => {
            // A caller that stopped reading must not hold this task forever.
            match tokio::time::timeout(REPLY_SEND_LIMIT, connection.send(&frame)).await {
                Ok(sent) => sent.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err("the caller stopped reading".to_owned()),
            }
        }
        Err(reason) => Err(reason),
    };
    if sent.is_ok() {
        inner.counters.replies_sent.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(reason) = sent {
        tracing::warn!(caller = %reply_to, request, %reason, "a reply could not be sent; the caller will time out");
    }
}

/// Passes a call on to the node `choose_node` picked, with the caller's reply address: the
/// owner answers the caller directly.
async fn forward(
    inner: &Arc<Inner>,
    from: &Connection,
    reply_to: NodeId,
    request: u64,
    owner: NodeId,
    message: Message,
    deadline: Instant,
) {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let frame = Frame::Call {
        reply_to: reply_to.clone(),
        request,
        hop: WireHop::Forwarded,
        remaining_micros: u64::try_from(remaining.as_micros()).unwrap_or(u64::MAX),
        message: message.clone(),
    };
    // Remembered before the send, so a cancel that arrives meanwhile follows the call.
    let call = (reply_to.clone(), request);
    lock(&inner.forwarded).insert(call.clone(), owner.clone(), deadline, Instant::now());
    let sent = match inner.connection_to(&owner).await {
        Ok(connection) => connection
            .send(&frame)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(reason) => Err(reason),
    };
    match sent {
        Ok(()) => {
            inner
                .counters
                .calls_forwarded
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(reason) => {
            lock(&inner.forwarded).remove(&call);
            tracing::warn!(%owner, %reason, "forwarding failed");
            let declined = message.return_with(Response::TryAnotherNode(format!(
                "{} could not forward to its owner {owner}: {reason}",
                inner.me
            )));
            reply_straight(inner, from, &reply_to, request, declined).await;
        }
    }
}

fn cancel(inner: &Arc<Inner>, reply_to: NodeId, request: u64) {
    let key = (reply_to, request);
    if let Some(task) = lock(&inner.serving).remove(&key) {
        task.abort();
        tracing::debug!(caller = %key.0, request, "call cancelled by its caller");
    }
    let owner = lock(&inner.forwarded).remove(&key);
    if let Some(owner) = owner
        && let Some(connection) = inner.live_connection(&owner)
    {
        // Never wait on another peer inside this connection's reader.
        tokio::spawn(async move {
            let _ = connection
                .send(&Frame::Cancel {
                    reply_to: key.0,
                    request,
                })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Cluster, ClusterConfig};

    /// A cancel that arrives while the forwarded call is still being sent to its owner finds
    /// the call, and follows it there.
    #[tokio::test]
    async fn a_cancel_arriving_while_a_call_is_forwarded_follows_it() {
        let config = ClusterConfig::new("c", b"sixteen or more secret bytes".to_vec());
        let cluster = Cluster::start(switchyard_messaging::Node::new("m"), config)
            .await
            .unwrap();
        let inner = cluster.inner.clone();
        let (caller, owner) = (NodeId::new("caller", 1), NodeId::new("owner", 1));
        // The owner reads nothing: the forward's send stays under way.
        let (to_owner, _unread) = Connection::detached(owner.clone(), owner.clone());
        inner.register(to_owner.clone());
        let (from_caller, _far) = Connection::detached(caller.clone(), caller.clone());
        let message = Message::new("svc").with_request(&vec![7_u8; 64 * 1024]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let forwarding = forward(
            &inner,
            &from_caller,
            caller.clone(),
            7,
            owner,
            message,
            deadline,
        );
        tokio::pin!(forwarding);
        let still_sending = tokio::time::timeout(Duration::from_millis(100), &mut forwarding).await;
        assert!(
            still_sending.is_err(),
            "the send did not wait for the owner"
        );
        assert_eq!(to_owner.queued(), 1);
        cancel(&inner, caller, 7);
        let followed = tokio::time::timeout(Duration::from_secs(1), async {
            while to_owner.queued() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(followed.is_ok(), "the cancel did not follow the call");
    }
}
