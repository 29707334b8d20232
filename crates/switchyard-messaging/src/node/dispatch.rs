//! How a call finds its service and comes back: discovery, authorization, placement, execution
//! under a deadline, and fail-over between providers.
//!
//! The common case (one local provider) is kept lean: the router's rules run and the handler is
//! spawned while the registry snapshot is borrowed, so no reference count is touched, and the
//! rarer paths (fail-over, forwarding) are boxed so they do not bloat every dispatch's future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tracing::{Instrument, Level, field};

use super::registry::LocalService;
use super::{Authorization, Node, Served};
use crate::remote::{Hop, RemoteError};
use crate::router::{NodeChoice, Visibility, panic_text};
use crate::{Message, NodeId, Reply, Response, telemetry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Dispatch,
    Validate,
}

/// A provider to try, in the order the dispatcher tries them.
enum Candidate {
    Local(Arc<LocalService>),
    Remote(NodeId),
}

/// What the router of a local service made of a call on its first hop.
enum Admission {
    Answered(Message),
    Forward(NodeId, Message),
    Run(Message),
}

/// A call after the router's rules: answered already, to forward, or running here.
enum Started {
    Answered(Message),
    Forward(NodeId, Message),
    Running(Running),
}

/// A handler running in its own task, and what is needed to answer if it cannot.
struct Running {
    handle: JoinHandle<Result<Reply, Response>>,
    skeleton: Message,
    span: tracing::Span,
    started: Option<Instant>,
}

/// Aborts a handler's task when whoever awaited it goes away; a no-op once it has finished.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What running a handler here produced.
enum Executed {
    Reply(Message),
    /// The handler chose not to reply; the skeleton answers the timeout when the caller waits.
    NoReply(Message),
}

/// Answers `message` with `response`, dropping what a reply does not carry.
fn answer(mut message: Message, response: Response) -> Message {
    message.strip_for_reply();
    message.return_with(response)
}

fn timed_out(message: Message, timeout: Duration) -> Message {
    let response = Response::ServiceTimeout {
        service: message.service().to_owned(),
        message_id: message.id().to_owned(),
        timeout,
    };
    answer(message, response)
}

/// The clock is read for telemetry durations only when someone listens.
fn start_clock() -> Option<Instant> {
    tracing::enabled!(Level::DEBUG).then(Instant::now)
}

fn elapsed_ns(since: Option<Instant>) -> Option<u64> {
    since.map(|since| u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// The handler's outcome if it finishes within one scheduling turn of the caller, else `None`.
///
/// Most handlers finish that fast, and arming the deadline's timer first would cost more than
/// they do: on a runtime with an idle worker, registering a timer wakes that worker with a system
/// call. So the caller polls the handle (the handler's completion wakes it), and also asks the
/// runtime for a deferred wake-up (`yield_now`, which wakes no other thread); if that wake-up
/// finds the handler still running, the caller arms the timer. The deadline does not move.
async fn finished_within_a_turn<T>(handle: &mut JoinHandle<T>) -> Option<Result<T, JoinError>> {
    let turn = tokio::task::yield_now();
    tokio::pin!(turn);
    let mut deferred = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = Pin::new(&mut *handle).poll(cx) {
            return Poll::Ready(Some(outcome));
        }
        if deferred {
            return Poll::Ready(None);
        }
        deferred = true;
        match turn.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

fn panic_reason(service: &str, error: JoinError) -> String {
    if error.is_cancelled() {
        return format!("service `{service}` was cancelled");
    }
    let panic = error.into_panic();
    format!("service `{service}` panicked: {}", panic_text(&*panic))
}

impl Node {
    pub(super) async fn run_dispatch(
        &self,
        mut message: Message,
        timeout: Duration,
        purpose: Purpose,
    ) -> Message {
        if message.is_halted() {
            return message;
        }
        let deadline = Instant::now() + timeout;
        message.stamp_dispatch(self.id());
        let span = telemetry::dispatch_span(&message, self.id());
        self.discover_and_invoke(message, deadline, timeout, purpose)
            .instrument(span)
            .await
    }

    async fn discover_and_invoke(
        &self,
        message: Message,
        deadline: Instant,
        timeout: Duration,
        purpose: Purpose,
    ) -> Message {
        let started = start_clock();
        tracing::debug!(name: "discovering_service", service = message.service());
        let remote_providers = match self.inner.remote.get() {
            Some(remote) => remote.providers(message.service()),
            None => Vec::new(),
        };
        let fast = {
            let registry = self.inner.registry.load();
            match registry.get(message.service()) {
                Some(service) if remote_providers.is_empty() => {
                    self.found(self.id(), started);
                    tracing::debug!(name: "invoking_service", service_node = %self.id());
                    Ok(self.start(service, message, Hop::First))
                }
                local => Err((local.cloned(), message)),
            }
        };
        let reply = match fast {
            Ok(Started::Answered(reply)) => reply,
            Ok(Started::Running(running)) => self.await_local(running, deadline, timeout).await,
            Ok(Started::Forward(node, message)) => {
                Box::pin(self.forward(node, message, deadline, timeout)).await
            }
            Err((None, message)) if remote_providers.is_empty() => {
                tracing::debug!(name: "service_not_found", duration_ns = elapsed_ns(started));
                let service = message.service().to_owned();
                return answer(message, Response::ServiceUnavailable(service));
            }
            Err((local, message)) => {
                let first = match (&local, remote_providers.first()) {
                    (Some(_), _) | (None, None) => self.id(),
                    (None, Some(node)) => node,
                };
                self.found(first, started);
                Box::pin(self.fail_over(local, remote_providers, message, deadline, timeout)).await
            }
        };
        let response = reply.response().map(field::display);
        let duration_ns = elapsed_ns(started);
        match purpose {
            Purpose::Dispatch => {
                tracing::debug!(name: "service_responded", duration_ns, response);
            }
            Purpose::Validate => {
                tracing::debug!(name: "service_validation_responded", duration_ns, response);
            }
        }
        reply
    }

    fn found(&self, node: &NodeId, started: Option<Instant>) {
        tracing::Span::current().record("service_node", field::display(node));
        tracing::debug!(
            name: "service_found",
            service_node = %node,
            duration_ns = elapsed_ns(started),
        );
    }

    /// Tries each provider in turn (local first, then the peers in random order, so load
    /// spreads) until one answers something other than [`Response::TryAnotherNode`]. It moves on
    /// only when the previous provider declined or never received the call: after a timeout the
    /// first call may still be running, so it is not repeated elsewhere.
    async fn fail_over(
        &self,
        local: Option<Arc<LocalService>>,
        mut remote_providers: Vec<NodeId>,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        fastrand::shuffle(&mut remote_providers);
        let candidates: Vec<Candidate> = local
            .map(Candidate::Local)
            .into_iter()
            .chain(remote_providers.into_iter().map(Candidate::Remote))
            .collect();
        let skeleton = message.reply_skeleton();
        let mut declined = Vec::new();
        let count = candidates.len();
        let mut original = Some(message);
        for (index, candidate) in candidates.into_iter().enumerate() {
            let attempt = if index + 1 == count {
                original.take()
            } else {
                original.clone()
            };
            let Some(attempt) = attempt else { break };
            let node = match &candidate {
                Candidate::Local(_) => self.id().clone(),
                Candidate::Remote(node) => node.clone(),
            };
            tracing::debug!(name: "invoking_service", service_node = %node);
            let reply = match candidate {
                Candidate::Local(service) => {
                    self.run_local(&service, attempt, deadline, timeout).await
                }
                Candidate::Remote(node) => {
                    match self
                        .invoke_remote(node.clone(), attempt, Hop::First, deadline)
                        .await
                    {
                        Ok(reply) => reply,
                        Err(RemoteError::NotDelivered { reason }) => {
                            tracing::debug!(name: "service_declined", service_node = %node, reason);
                            declined.push((node, reason));
                            continue;
                        }
                        Err(RemoteError::TimedOut) => return timed_out(skeleton, timeout),
                        Err(error) => {
                            return answer(skeleton, Response::error(error.to_string()));
                        }
                    }
                }
            };
            match reply.response() {
                Some(Response::TryAnotherNode(reason)) => {
                    tracing::debug!(name: "service_declined", service_node = %node, reason);
                    declined.push((node, reason.clone()));
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                _ => return reply,
            }
        }
        answer(skeleton, Response::NoNodesAvailable(declined))
    }

    async fn invoke_remote(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> Result<Message, RemoteError> {
        match self.inner.remote.get() {
            Some(remote) => remote.invoke(node, message, hop, deadline).await,
            None => Err(RemoteError::NotDelivered {
                reason: "this node is not part of a cluster".to_owned(),
            }),
        }
    }

    /// Sends a call to the node `choose_node` picked; that node runs it without choosing again.
    async fn forward(
        &self,
        node: NodeId,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        let skeleton = message.reply_skeleton();
        match self
            .invoke_remote(node.clone(), message, Hop::Forwarded, deadline)
            .await
        {
            Ok(reply) => reply,
            Err(RemoteError::TimedOut) => timed_out(skeleton, timeout),
            Err(error) => answer(
                skeleton,
                Response::error(format!("could not forward to node {node}: {error}")),
            ),
        }
    }

    /// The first hop of a call to a service registered here, off the fast path.
    async fn run_local(
        &self,
        service: &LocalService,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        match self.start(service, message, Hop::First) {
            Started::Answered(reply) => reply,
            Started::Forward(node, message) => {
                Box::pin(self.forward(node, message, deadline, timeout)).await
            }
            Started::Running(running) => self.await_local(running, deadline, timeout).await,
        }
    }

    /// Waits for a local handler on behalf of a caller here: a handler that does not reply
    /// leaves the caller waiting until its deadline, as a lost reply would.
    async fn await_local(&self, running: Running, deadline: Instant, timeout: Duration) -> Message {
        match self.await_handler(running, deadline, timeout).await {
            Executed::Reply(reply) => reply,
            Executed::NoReply(skeleton) => {
                tokio::time::sleep_until(deadline).await;
                timed_out(skeleton, timeout)
            }
        }
    }

    /// Applies the router's rules to a call and, when it is to run here, starts the handler.
    fn start(&self, service: &LocalService, message: Message, hop: Hop) -> Started {
        match self.admit(service, message, hop) {
            Admission::Run(message) => Started::Running(self.spawn_handler(service, message)),
            Admission::Answered(reply) => Started::Answered(reply),
            Admission::Forward(node, message) => Started::Forward(node, message),
        }
    }

    /// What the router says of a call: refused, run elsewhere, or run here. A forwarded call is
    /// run as it is: it was authorized and placed by the node that first received it.
    fn admit(&self, service: &LocalService, message: Message, hop: Hop) -> Admission {
        tracing::debug!(
            name: "service_request_received",
            visibility = %service.info.visibility,
            origin_node = message.origin_node().map(field::display),
        );
        if hop == Hop::Forwarded {
            return Admission::Run(message);
        }
        if let Err(response) = service.policy.authorize(&message) {
            return Admission::Answered(answer(message, response));
        }
        if service.info.visibility == Visibility::Private {
            return Admission::Run(message);
        }
        match service.policy.choose_node(&message) {
            Ok(NodeChoice::Node(node)) if node != *self.id() => Admission::Forward(node, message),
            Ok(NodeChoice::Local | NodeChoice::Node(_)) => Admission::Run(message),
            Err(response) => Admission::Answered(answer(message, response)),
        }
    }

    /// Starts the handler in its own task, so a panic or a hang cannot take the caller with it.
    fn spawn_handler(&self, service: &LocalService, message: Message) -> Running {
        let skeleton = message.reply_skeleton();
        let visibility = match service.info.visibility {
            Visibility::Public => "public",
            Visibility::Private => "private",
        };
        let span = telemetry::service_span(&message, self.id(), visibility);
        let started = start_clock();
        span.in_scope(|| tracing::debug!(name: "executing_service", node = %self.id()));
        let handle = service
            .handler
            .spawn(message, self, &service.policy, span.clone());
        Running {
            handle,
            skeleton,
            span,
            started,
        }
    }

    async fn await_handler(
        &self,
        running: Running,
        deadline: Instant,
        timeout: Duration,
    ) -> Executed {
        let Running {
            mut handle,
            skeleton,
            span,
            started,
        } = running;
        // A caller that stops waiting (its future dropped, a remote cancel) stops the work too.
        let _stop_when_abandoned = AbortOnDrop(handle.abort_handle());
        let outcome = match finished_within_a_turn(&mut handle).await {
            Some(outcome) => Ok(outcome),
            None => tokio::time::timeout_at(deadline, &mut handle).await,
        };
        let failure = match outcome {
            Ok(Ok(Ok(Reply::To(mut reply)))) => {
                reply.strip_for_reply();
                span.in_scope(|| {
                    tracing::debug!(
                        name: "execution_finished",
                        duration_ns = elapsed_ns(started),
                        response = reply.response().map(field::display),
                    );
                });
                return Executed::Reply(reply);
            }
            Ok(Ok(Ok(Reply::NoReply))) => {
                span.in_scope(|| {
                    tracing::debug!(name: "execution_finished", duration_ns = elapsed_ns(started));
                });
                return Executed::NoReply(skeleton);
            }
            Ok(Ok(Err(response))) => response,
            Ok(Err(join_error)) => Response::error(panic_reason(skeleton.service(), join_error)),
            Err(_elapsed) => {
                // The caller stops waiting, so the work stops too: x3m let it run on unseen.
                handle.abort();
                span.in_scope(|| {
                    tracing::debug!(name: "execution_failed", reason = "cancelled at the deadline");
                });
                return Executed::Reply(timed_out(skeleton, timeout));
            }
        };
        span.in_scope(|| tracing::debug!(name: "execution_failed", reason = %failure));
        Executed::Reply(answer(skeleton, failure))
    }

    pub(super) async fn serve_incoming(
        &self,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> Served {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let started = {
            let registry = self.inner.registry.load();
            match registry.get(message.service()) {
                Some(service) if service.info.visibility == Visibility::Public => {
                    self.start(service, message, hop)
                }
                // Private services exist only for their own node.
                _ => {
                    let name = message.service().to_owned();
                    return Served::Reply(answer(message, Response::ServiceUnavailable(name)));
                }
            }
        };
        match started {
            Started::Answered(reply) => Served::Reply(reply),
            Started::Forward(node, message) => Served::Forward { node, message },
            Started::Running(running) => {
                match self.await_handler(running, deadline, timeout).await {
                    Executed::Reply(reply) => Served::Reply(reply),
                    Executed::NoReply(_) => Served::NoReply,
                }
            }
        }
    }

    pub(super) async fn check_authorization(&self, message: &Message) -> Authorization {
        let span = telemetry::dispatch_span(message, self.id());
        span.in_scope(|| {
            tracing::debug!(
                name: "checking_if_service_call_is_authorized",
                service = message.service(),
            );
        });
        self.authorize_with_provider(message).instrument(span).await
    }

    async fn authorize_with_provider(&self, message: &Message) -> Authorization {
        if let Some(service) = self.inner.registry.load().get(message.service()) {
            return match service.policy.authorize(message) {
                Ok(()) => Authorization::Allowed,
                Err(response) => Authorization::Denied(response),
            };
        }
        let Some(remote) = self.inner.remote.get() else {
            return Authorization::ServiceUnavailable;
        };
        let deadline = Instant::now() + self.inner.default_timeout;
        for node in remote.providers(message.service()) {
            match remote.authorize(node, message.clone(), deadline).await {
                Ok(Ok(())) => return Authorization::Allowed,
                Ok(Err(response)) => return Authorization::Denied(response),
                Err(RemoteError::NotDelivered { .. }) => continue,
                Err(error) => return Authorization::Denied(Response::error(error.to_string())),
            }
        }
        Authorization::ServiceUnavailable
    }
}
