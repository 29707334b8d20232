//! How a call finds its service and comes back: discovery, authorization, placement, execution
//! under a deadline, and fail-over between providers.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinError;
use tokio::time::Instant;
use tracing::{Instrument, field};

use super::registry::LocalService;
use super::{Authorization, Node, Served};
use crate::remote::{Hop, RemoteError};
use crate::router::{NodeChoice, Visibility};
use crate::{Ctx, Message, NodeId, Payload, Reply, Response, telemetry};

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

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn panic_reason(service: &str, error: JoinError) -> String {
    if error.is_cancelled() {
        return format!("service `{service}` was cancelled");
    }
    let panic = error.into_panic();
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("service `{service}` panicked: {detail}")
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
        let started = Instant::now();
        tracing::debug!(name: "discovering_service", service = message.service());
        let local = self.inner.registry.load().get(message.service()).cloned();
        let mut remote_providers = match self.inner.remote.get() {
            Some(remote) => remote.providers(message.service()),
            None => Vec::new(),
        };
        let first_node = match (&local, remote_providers.first()) {
            (Some(_), _) => self.id().clone(),
            (None, Some(node)) => node.clone(),
            (None, None) => {
                tracing::debug!(name: "service_not_found", duration_ns = elapsed_ns(started));
                let service = message.service().to_owned();
                return answer(message, Response::ServiceUnavailable(service));
            }
        };
        tracing::Span::current().record("service_node", field::display(&first_node));
        tracing::debug!(
            name: "service_found",
            service_node = %first_node,
            duration_ns = elapsed_ns(started),
        );

        let reply = match local {
            // The common case, one local provider, moves the message without a copy.
            Some(service) if remote_providers.is_empty() => {
                tracing::debug!(name: "invoking_service", service_node = %first_node);
                self.run_local(service, message, deadline, timeout).await
            }
            local => {
                // Local first, then the peers in random order, so load spreads across them.
                fastrand::shuffle(&mut remote_providers);
                let candidates: Vec<Candidate> = local
                    .map(Candidate::Local)
                    .into_iter()
                    .chain(remote_providers.into_iter().map(Candidate::Remote))
                    .collect();
                self.fail_over(candidates, message, deadline, timeout).await
            }
        };
        let response = reply.response().map(field::display);
        match purpose {
            Purpose::Dispatch => tracing::debug!(
                name: "service_responded",
                duration_ns = elapsed_ns(started),
                response,
            ),
            Purpose::Validate => tracing::debug!(
                name: "service_validation_responded",
                duration_ns = elapsed_ns(started),
                response,
            ),
        }
        reply
    }

    /// Tries each provider in turn until one answers something other than
    /// [`Response::TryAnotherNode`], moving on only when the previous one declined or never
    /// received the call: after a timeout the first call may still be running, so it is not
    /// repeated elsewhere.
    async fn fail_over(
        &self,
        candidates: Vec<Candidate>,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
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
                    self.run_local(service, attempt, deadline, timeout).await
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

    /// The first hop of a call to a service registered here.
    async fn run_local(
        &self,
        service: Arc<LocalService>,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Message {
        let message = match self.admit(&service, message) {
            Ok(message) => message,
            Err(Admission::Answered(reply)) => return reply,
            Err(Admission::Forward(node, message)) => {
                let skeleton = message.reply_skeleton();
                return match self
                    .invoke_remote(node.clone(), message, Hop::Forwarded, deadline)
                    .await
                {
                    Ok(reply) => reply,
                    Err(RemoteError::TimedOut) => timed_out(skeleton, timeout),
                    Err(error) => answer(
                        skeleton,
                        Response::error(format!("could not forward to node {node}: {error}")),
                    ),
                };
            }
        };
        match self.execute(&service, message, deadline, timeout).await {
            Executed::Reply(reply) => reply,
            Executed::NoReply(skeleton) => {
                tokio::time::sleep_until(deadline).await;
                timed_out(skeleton, timeout)
            }
        }
    }

    /// What the router says of a call on its first hop: refused, run elsewhere, or run here.
    fn admit(&self, service: &LocalService, message: Message) -> Result<Message, Admission> {
        tracing::debug!(
            name: "service_request_received",
            visibility = %service.info.visibility,
            origin_node = message.origin_node().map(field::display),
        );
        if let Err(response) = (service.policy.authorize)(&message) {
            return Err(Admission::Answered(answer(message, response)));
        }
        if service.info.visibility == Visibility::Private {
            return Ok(message);
        }
        match (service.policy.choose_node)(&message) {
            NodeChoice::Node(node) if node != *self.id() => Err(Admission::Forward(node, message)),
            NodeChoice::Local | NodeChoice::Node(_) => Ok(message),
        }
    }

    /// Runs the handler in its own task, so a panic or a hang cannot take the caller with it.
    async fn execute(
        &self,
        service: &LocalService,
        message: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Executed {
        let skeleton = message.reply_skeleton();
        let visibility = match service.info.visibility {
            Visibility::Public => "public",
            Visibility::Private => "private",
        };
        let span = telemetry::service_span(&message, self.id(), visibility);
        let started = Instant::now();
        span.in_scope(|| tracing::debug!(name: "executing_service", node = %self.id()));
        let mut handle = service
            .handler
            .spawn(message, Ctx::new(self.clone()), span.clone());
        let failure = match tokio::time::timeout_at(deadline, &mut handle).await {
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
            Ok(Ok(Err(error))) => Response::Error(Payload::text(error.reason())),
            Ok(Err(join_error)) => Response::error(panic_reason(&service.info.name, join_error)),
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
        let service = match self.inner.registry.load().get(message.service()) {
            Some(service) if service.info.visibility == Visibility::Public => service.clone(),
            // Private services exist only for their own node.
            _ => {
                let name = message.service().to_owned();
                return Served::Reply(answer(message, Response::ServiceUnavailable(name)));
            }
        };
        let message = match hop {
            Hop::Forwarded => message,
            Hop::First => match self.admit(&service, message) {
                Ok(message) => message,
                Err(Admission::Answered(reply)) => return Served::Reply(reply),
                Err(Admission::Forward(node, message)) => {
                    return Served::Forward { node, message };
                }
            },
        };
        match self.execute(&service, message, deadline, timeout).await {
            Executed::Reply(reply) => Served::Reply(reply),
            Executed::NoReply(_) => Served::NoReply,
        }
    }

    pub(super) async fn check_authorization(&self, message: &Message) -> Authorization {
        let span = telemetry::dispatch_span(message, self.id());
        span.in_scope(|| tracing::debug!(name: "checking_if_service_call_is_authorized", service = message.service()));
        self.authorize_with_provider(message).instrument(span).await
    }

    async fn authorize_with_provider(&self, message: &Message) -> Authorization {
        if let Some(service) = self.inner.registry.load().get(message.service()) {
            return match (service.policy.authorize)(message) {
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

enum Admission {
    Answered(Message),
    Forward(NodeId, Message),
}
