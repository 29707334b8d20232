//! The names of the spans and events Switchyard emits through `tracing`.
//!
//! Every dispatch runs in a [`DISPATCH_SPAN`] and every service execution in a [`SERVICE_SPAN`];
//! both record `message.id`, `message.correlation_id`, `service`, the caller's and the service's
//! node and the message's `log_fields`. Inside them, events named as in x3m's telemetry mark each
//! step, with durations in nanoseconds (`duration_ns`). The library never installs a subscriber:
//! install one (for instance `tracing-subscriber`'s `fmt`) in your application to see them.
//!
//! The event sequence of a dispatch to a local service is [`DISCOVERING_SERVICE`],
//! [`SERVICE_FOUND`], [`INVOKING_SERVICE`], [`SERVICE_REQUEST_RECEIVED`], [`EXECUTING_SERVICE`],
//! [`EXECUTION_FINISHED`], [`SERVICE_RESPONDED`] (or [`SERVICE_VALIDATION_RESPONDED`] for
//! [`Node::validate`](crate::Node::validate)); of an unknown service, [`DISCOVERING_SERVICE`]
//! then [`SERVICE_NOT_FOUND`]; of [`Node::authorized`](crate::Node::authorized),
//! [`CHECKING_IF_SERVICE_CALL_IS_AUTHORIZED`] alone.

use crate::{Message, NodeId};

/// The span around one dispatch, on the caller's node.
pub const DISPATCH_SPAN: &str = "switchyard.dispatch";
/// The span around one execution of a service, on the node running it.
pub const SERVICE_SPAN: &str = "switchyard.service";

/// The dispatcher starts looking for a provider.
pub const DISCOVERING_SERVICE: &str = "discovering_service";
/// A provider was found (`service_node`, `duration_ns` of the look-up).
pub const SERVICE_FOUND: &str = "service_found";
/// No node offers the service.
pub const SERVICE_NOT_FOUND: &str = "service_not_found";
/// The dispatcher calls a provider (`service_node`).
pub const INVOKING_SERVICE: &str = "invoking_service";
/// A provider received a call (`visibility`, `origin_node`).
pub const SERVICE_REQUEST_RECEIVED: &str = "service_request_received";
/// A handler starts running (`node`).
pub const EXECUTING_SERVICE: &str = "executing_service";
/// A handler finished and replied (`duration_ns` of the execution).
pub const EXECUTION_FINISHED: &str = "execution_finished";
/// A handler failed, panicked or was cancelled at the deadline (`reason`).
pub const EXECUTION_FAILED: &str = "execution_failed";
/// The dispatcher has the answer (`duration_ns` of the whole dispatch, `response`).
pub const SERVICE_RESPONDED: &str = "service_responded";
/// As [`SERVICE_RESPONDED`], for a validation (dry run).
pub const SERVICE_VALIDATION_RESPONDED: &str = "service_validation_responded";
/// A provider asked the dispatcher to try another node (`service_node`, `reason`).
pub const SERVICE_DECLINED: &str = "service_declined";
/// [`Node::authorized`](crate::Node::authorized) was asked.
pub const CHECKING_IF_SERVICE_CALL_IS_AUTHORIZED: &str = "checking_if_service_call_is_authorized";
/// A router's services were registered on a node (`router`, `public`, `private`).
pub const REGISTER_LOCAL_SERVICES: &str = "register_local_services";

pub(crate) fn dispatch_span(message: &Message, caller: &NodeId) -> tracing::Span {
    tracing::info_span!(
        "switchyard.dispatch",
        message.id = %message.id(),
        message.correlation_id = %message.correlation_id(),
        service = %message.service(),
        caller_node = %caller,
        service_node = tracing::field::Empty,
        log_fields = %message.log_fields(),
    )
}

pub(crate) fn service_span(message: &Message, node: &NodeId, visibility: &str) -> tracing::Span {
    tracing::info_span!(
        "switchyard.service",
        message.id = %message.id(),
        message.correlation_id = %message.correlation_id(),
        service = %message.service(),
        visibility = visibility,
        caller_node = message.origin_node().map(tracing::field::display),
        service_node = %node,
        log_fields = %message.log_fields(),
    )
}
