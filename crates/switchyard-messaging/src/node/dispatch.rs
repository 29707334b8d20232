//! How a call finds its service and comes back: discovery, authorization, placement, execution
//! under a deadline, and fail-over between providers.
//!
//! The common case (one local provider) is kept lean: the router's rules run and the handler is
//! spawned while the registry snapshot is borrowed, so no reference count is touched, and the
//! rarer paths (fail-over, forwarding) are boxed so they do not bloat every dispatch's future.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, Level, field};

use super::execution::{Execution, Outcome, finished_within_a_turn};
use super::registry::LocalService;
use super::wall_clock;
use super::{Authorization, Node, Served};
use crate::message::ReplySkeleton;
use crate::remote::{Hop, RemoteError};
use crate::router::{NodeChoice, Visibility};
use crate::{Message, NodeId, Reply, Response, telemetry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Dispatch,
    Validate,
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

/// A handler running for a call, and what is needed to answer if it cannot.
struct Running {
    execution: Execution,
    skeleton: ReplySkeleton,
    span: tracing::Span,
    started: Option<Instant>,
}

/// What running a handler here produced.
enum Executed {
    Reply(Message),
    /// The handler chose not to reply; the skeleton answers the timeout when the caller waits.
    NoReply(ReplySkeleton),
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

/// The start of a telemetry duration, only when someone listens: `now`, the instant the call
/// already read for its deadline, so timing costs no clock read of its own.
fn timed_from(now: Instant) -> Option<Instant> {
    tracing::enabled!(Level::DEBUG).then_some(now)
}

/// As [`timed_from`], reading the clock: for the paths off the common one (fail-over).
fn start_clock() -> Option<Instant> {
    tracing::enabled!(Level::DEBUG).then(Instant::now)
}

fn elapsed_ns(since: Option<Instant>) -> Option<u64> {
    since.map(|since| u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX))
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
        // The one clock read of a call: its deadline, its dispatch time and its telemetry
        // durations all start here.
        let now = Instant::now();
        let deadline = now + timeout;
        message.stamp_dispatch(self.id(), wall_clock::at(now));
        let span = telemetry::dispatch_span(&message, self.id());
        self.discover_and_invoke(message, timed_from(now), deadline, timeout, purpose)
            .instrument(span)
            .await
    }

    async fn discover_and_invoke(
        &self,
        message: Message,
        started: Option<Instant>,
        deadline: Instant,
        timeout: Duration,
        purpose: Purpose,
    ) -> Message {
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
                    Ok(self.start(service, message, Hop::First, started))
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
                match local {
                    // Peers only, a cluster's common case: their fail-over runs in this
                    // future, with no boxed future of its own.
                    None => {
                        self.call_remotes(remote_providers, message, Vec::new(), deadline, timeout)
                            .await
                    }
                    Some(local) => {
                        Box::pin(self.fail_over(
                            local,
                            remote_providers,
                            message,
                            deadline,
                            timeout,
                        ))
                        .await
                    }
                }
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

    /// Tries the service here, then, if it declines with [`Response::TryAnotherNode`] before the
    /// deadline, the peers offering it ([`call_remotes`](Self::call_remotes)).
    async fn fail_over(
        &self,
        local: Arc<LocalService>,
        remote_providers: Vec<NodeId>,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        tracing::debug!(name: "invoking_service", service_node = %self.id());
        let reply = self
            .run_local(&local, message.clone(), deadline, timeout)
            .await;
        let reason = match reply.response() {
            Some(Response::TryAnotherNode(reason)) => reason.clone(),
            _ => return reply,
        };
        tracing::debug!(name: "service_declined", service_node = %self.id(), reason);
        let declined = vec![(self.id().clone(), reason)];
        if Instant::now() >= deadline {
            return answer(
                message.reply_skeleton(self.id()).into_message(self.id()),
                Response::NoNodesAvailable(declined),
            );
        }
        self.call_remotes(remote_providers, message, declined, deadline, timeout)
            .await
    }

    /// Tries each peer in `nodes` in turn, in random order so load spreads, until one answers
    /// something other than [`Response::TryAnotherNode`]; `declined` holds the providers that
    /// declined before them. It moves on only when the previous peer declined or never
    /// received the call: after a timeout the first call may still be running, so it is not
    /// repeated elsewhere.
    async fn call_remotes(
        &self,
        mut nodes: Vec<NodeId>,
        message: Message,
        mut declined: Vec<(NodeId, String)>,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        fastrand::shuffle(&mut nodes);
        let skeleton = message.reply_skeleton(self.id());
        let last = nodes.len().saturating_sub(1);
        let mut original = Some(message);
        for (index, node) in nodes.into_iter().enumerate() {
            let attempt = if index == last {
                original.take()
            } else {
                original.clone()
            };
            let Some(attempt) = attempt else { break };
            tracing::debug!(name: "invoking_service", service_node = %node);
            let reason = match self
                .invoke_remote(node.clone(), attempt, Hop::First, deadline)
                .await
            {
                Ok(reply) => match reply.response() {
                    Some(Response::TryAnotherNode(reason)) => reason.clone(),
                    _ => return reply,
                },
                Err(RemoteError::NotDelivered { reason }) => {
                    tracing::debug!(name: "service_declined", service_node = %node, reason);
                    declined.push((node, reason));
                    continue;
                }
                Err(RemoteError::TimedOut) => {
                    return timed_out(skeleton.into_message(self.id()), timeout);
                }
                Err(error) => {
                    return answer(
                        skeleton.into_message(self.id()),
                        Response::error(error.to_string()),
                    );
                }
            };
            tracing::debug!(name: "service_declined", service_node = %node, reason);
            declined.push((node, reason));
            if Instant::now() >= deadline {
                break;
            }
        }
        answer(
            skeleton.into_message(self.id()),
            Response::NoNodesAvailable(declined),
        )
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
        let skeleton = message.reply_skeleton(self.id());
        match self
            .invoke_remote(node.clone(), message, Hop::Forwarded, deadline)
            .await
        {
            Ok(reply) => reply,
            Err(RemoteError::TimedOut) => timed_out(skeleton.into_message(self.id()), timeout),
            Err(error) => answer(
                skeleton.into_message(self.id()),
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
        let started = start_clock();
        match self.start(service, message, Hop::First, started) {
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
                timed_out(skeleton.into_message(self.id()), timeout)
            }
        }
    }

    /// Applies the router's rules to a call and, when it is to run here, starts the handler
    /// (see [`Execution::start`]). `started` begins the execution's telemetry duration.
    fn start(
        &self,
        service: &LocalService,
        message: Message,
        hop: Hop,
        started: Option<Instant>,
    ) -> Started {
        match self.admit(service, message, hop) {
            Admission::Run(message) => {
                Started::Running(self.start_handler(service, message, started))
            }
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

    /// Starts the handler; a panic or a hang cannot take the caller with it (see
    /// [`Execution`]).
    fn start_handler(
        &self,
        service: &LocalService,
        message: Message,
        started: Option<Instant>,
    ) -> Running {
        let skeleton = message.reply_skeleton(self.id());
        let visibility = match service.info.visibility {
            Visibility::Public => "public",
            Visibility::Private => "private",
        };
        let span = telemetry::service_span(&message, self.id(), visibility);
        span.in_scope(|| tracing::debug!(name: "executing_service", node = %self.id()));
        let future = service
            .handler
            .call(message, self, &service.policy, span.clone());
        Running {
            execution: Execution::start(future),
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
            mut execution,
            skeleton,
            span,
            started,
        } = running;
        // A caller that stops waiting (its future dropped, a remote cancel) drops `execution`,
        // which stops the handler too.
        let outcome = match finished_within_a_turn(&mut execution).await {
            Some(outcome) => Ok(outcome),
            None => tokio::time::timeout_at(deadline, &mut execution).await,
        };
        let failure = match outcome {
            Ok(Outcome::Finished(Ok(Reply::To(mut reply)))) => {
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
            Ok(Outcome::Finished(Ok(Reply::NoReply))) => {
                span.in_scope(|| {
                    tracing::debug!(name: "execution_finished", duration_ns = elapsed_ns(started));
                });
                return Executed::NoReply(skeleton);
            }
            Ok(Outcome::Finished(Err(response))) => response,
            Ok(Outcome::Panicked(panic)) => Response::error(format!(
                "service `{}` panicked: {panic}",
                skeleton.service()
            )),
            Ok(Outcome::Cancelled) => {
                Response::error(format!("service `{}` was cancelled", skeleton.service()))
            }
            Err(_elapsed) => {
                // The caller stops waiting, so the work stops too: x3m let it run on unseen.
                drop(execution);
                span.in_scope(|| {
                    tracing::debug!(name: "execution_failed", reason = "cancelled at the deadline");
                });
                return Executed::Reply(timed_out(skeleton.into_message(self.id()), timeout));
            }
        };
        span.in_scope(|| tracing::debug!(name: "execution_failed", reason = %failure));
        Executed::Reply(answer(skeleton.into_message(self.id()), failure))
    }

    pub(super) async fn serve_incoming(
        &self,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> Served {
        let now = Instant::now();
        let timeout = deadline.saturating_duration_since(now);
        let started = {
            let registry = self.inner.registry.load();
            match registry.get(message.service()) {
                // Polled where this future is: a cluster drives it on a task serving one
                // connection's calls, beside the reader of its frames.
                Some(service) if service.info.visibility == Visibility::Public => {
                    self.start(service, message, hop, timed_from(now))
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
