//! Process managers and policies: react to events by sending commands.
//!
//! A [`Policy`] turns one decoded event into the commands it calls for ("a large withdrawal
//! asks for a review"). [`ProjectionRunner::policy`] runs it as a projection would be run
//! (one active runner under a lease, in global order, at least once, a checkpoint per batch)
//! and dispatches each command through a [`Node`], stamped so that the commands of a
//! redelivered event are recognised:
//!
//! - its **message id** is derived from the policy's name, the event's stream and version, and
//!   the command's place among the event's commands ([`command_id`]): the same event always
//!   sends the same ids, so an aggregate's idempotency (its window of message ids, the store's
//!   refusal of a message recorded twice) answers a redelivered command as it answered the first
//!   delivery, without deciding twice;
//! - its **correlation id** is the event's (the conversation goes on), its **causation id** the
//!   id of the message whose command recorded the event.
//!
//! A command answered with a failure ([`Message::success`] is an error) fails the batch: the
//! runner retries it with backoff (commands that had succeeded are sent again, with the same
//! ids, and answered from the aggregates' idempotency), then parks the event that keeps
//! failing ([`OnPoison::Park`], the default for policies) and goes on.

use std::future::Future;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchyard_aggregates::DecodedEvent;
use switchyard_aggregates::store::{GlobalReader, IntoShared};
use switchyard_messaging::{Message, Node, ReplyError};
use tracing::Instrument;

use crate::checkpoint::CheckpointStore;
use crate::runner::{BoxError, OnPoison, Projection, ProjectionRunner, ProjectionRunnerBuilder};

/// Reacts to events with commands: a policy ("when this happens, do that"), or a process
/// manager's step.
///
/// Run it with [`ProjectionRunner::policy`]. [`react`](Self::react) is called for each event
/// of the registered aggregate types, in global order, **at least once**: after a crash, a
/// lost lease or a failed command, an event is handed out again. It must therefore return the
/// same commands, in the same order, for the same event (decide from the event, and from state
/// that the commands' own effects do not change), so that their derived ids match the first
/// delivery's.
pub trait Policy: Send + 'static {
    /// The events it reads: one aggregate's `Event` type, or an enum of several (each
    /// registered aggregate's `Event` converts into it with `From`).
    type Event: Send + Sync + 'static;

    /// The commands `event` calls for, none for most: messages for the services to call, with
    /// their requests and aggregate ids. Their message, correlation and causation ids are set
    /// by the runner, replacing any set here (an event recorded without a correlation or
    /// message id leaves the command's own).
    ///
    /// An error fails the batch, as a failed command does: retried with backoff, then parked.
    fn react(
        &mut self,
        event: &DecodedEvent<Self::Event>,
    ) -> impl Future<Output = Result<Vec<Message>, BoxError>> + Send;
}

/// A [`Policy`] run as a [`Projection`]: it dispatches each event's commands through a
/// [`Node`]. Made by [`ProjectionRunner::policy`].
pub struct PolicyProjection<P> {
    name: Arc<str>,
    policy: P,
    node: Node,
}

impl<P> std::fmt::Debug for PolicyProjection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyProjection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<P> PolicyProjection<P> {
    /// The policy.
    pub fn get_ref(&self) -> &P {
        &self.policy
    }

    /// The policy, mutably.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// The policy, given back.
    pub fn into_inner(self) -> P {
        self.policy
    }
}

/// The runner of a [`Policy`].
pub type PolicyRunner<P> = ProjectionRunner<PolicyProjection<P>>;

impl<P: Policy> ProjectionRunner<PolicyProjection<P>> {
    /// Sets up a runner of `policy`, named `name` (in the checkpoint store, and in its
    /// commands' ids: keep it once commands were sent), dispatching its commands through
    /// `node`, reading `events` and keeping its checkpoint, lease and parked events in
    /// `checkpoints`. It parks an event that keeps failing ([`OnPoison::Park`]); register the
    /// aggregate types it reads with [`aggregate`](ProjectionRunnerBuilder::aggregate).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use switchyard_aggregates::{Aggregate, DecodedEvent};
    /// use switchyard_aggregates::store::MemoryStore;
    /// use switchyard_messaging::{Message, Node};
    /// use switchyard_projections::{BoxError, MemoryCheckpointStore, Policy, ProjectionRunner};
    ///
    /// #[derive(Default)]
    /// struct Account;
    /// #[derive(Clone, Serialize, Deserialize)]
    /// enum AccountEvent { Withdrawn(u64) }
    /// impl Aggregate for Account {
    ///     type Event = AccountEvent;
    ///     const NAME: &'static str = "account";
    ///     fn apply(&mut self, _: &AccountEvent) {}
    /// }
    ///
    /// /// A withdrawal over 1,000 asks for a review of the account.
    /// struct LargeWithdrawals;
    ///
    /// impl Policy for LargeWithdrawals {
    ///     type Event = AccountEvent;
    ///
    ///     async fn react(&mut self, event: &DecodedEvent<AccountEvent>) -> Result<Vec<Message>, BoxError> {
    ///         let AccountEvent::Withdrawn(amount) = event.event;
    ///         Ok(if amount > 1_000 {
    ///             vec![Message::new("review").with_aggregate_id(&*event.stream).with_request(&amount)]
    ///         } else {
    ///             Vec::new()
    ///         })
    ///     }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = Node::new("bank");
    /// let runner = ProjectionRunner::policy(
    ///     "large-withdrawals",
    ///     LargeWithdrawals,
    ///     node.clone(),
    ///     MemoryStore::new(),
    ///     MemoryCheckpointStore::new(),
    /// )
    /// .aggregate::<Account>()
    /// .start()?;
    /// runner.stop().await?;
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn policy(
        name: impl Into<String>,
        policy: P,
        node: Node,
        events: impl IntoShared<dyn GlobalReader>,
        checkpoints: impl CheckpointStore + 'static,
    ) -> ProjectionRunnerBuilder<PolicyProjection<P>> {
        let name = name.into();
        let projection = PolicyProjection {
            name: name.as_str().into(),
            policy,
            node,
        };
        ProjectionRunner::builder(name, projection, events, checkpoints).on_poison(OnPoison::Park)
    }
}

impl<P: Policy> Projection for PolicyProjection<P> {
    type Event = P::Event;

    async fn apply(&mut self, batch: &[DecodedEvent<P::Event>]) -> Result<(), BoxError> {
        for event in batch {
            let commands = self.policy.react(event).await?;
            for (index, command) in commands.into_iter().enumerate() {
                let command = stamp(&self.name, event, index, command);
                let span = tracing::info_span!(
                    "policy.dispatch",
                    policy = %self.name,
                    event.position = event.position,
                    event.stream = %event.stream,
                    event.version = event.version,
                    message.id = %command.id(),
                    service = %command.service(),
                    outcome = tracing::field::Empty,
                );
                dispatch(&self.node, command)
                    .instrument(span)
                    .await
                    .map_err(|failed| Box::new(failed) as BoxError)?;
            }
        }
        Ok(())
    }
}

/// Sends `command`, recording its outcome in the current span.
async fn dispatch(node: &Node, command: Message) -> Result<(), CommandFailed> {
    let (service, message_id) = (command.service().to_owned(), command.id().to_owned());
    let reply = node.dispatch(command).await;
    let span = tracing::Span::current();
    match reply.success() {
        Ok(response) => {
            span.record("outcome", tracing::field::display(response));
            Ok(())
        }
        Err(source) => {
            span.record("outcome", tracing::field::display(&source));
            tracing::warn!(service, message.id = message_id, error = %source, "a policy's command failed");
            Err(CommandFailed {
                service,
                message_id,
                source,
            })
        }
    }
}

/// A command a policy sent was answered with a failure: the batch fails, to be retried, then
/// parked.
#[derive(Debug, thiserror::Error)]
#[error("command `{service}` (message `{message_id}`) failed")]
pub struct CommandFailed {
    /// The service called.
    pub service: String,
    /// The command's message id.
    pub message_id: String,
    /// The failure its reply carried.
    #[source]
    pub source: ReplyError,
}

/// `command`, the `index`th of `event`'s commands under policy `policy`, with its derived id,
/// the event's correlation id and the event's message as causation.
fn stamp<E>(policy: &str, event: &DecodedEvent<E>, index: usize, command: Message) -> Message {
    let metadata = &event.metadata;
    let mut command = command.with_id(command_id(policy, &event.stream, event.version, index));
    // Events appended without metadata carry empty ids: the command then starts its own
    // conversation, as a message does.
    let correlation = [&metadata.correlation_id, &metadata.message_id]
        .into_iter()
        .find(|id| !id.is_empty());
    if let Some(correlation) = correlation {
        command = command.with_correlation_id(correlation.as_str());
    }
    if !metadata.message_id.is_empty() {
        command = command.with_causation_id(metadata.message_id.as_str());
    }
    command
}

/// The message id of the `index`th command (from 0) policy `policy` sends for the event at
/// `version` of `stream`: a UUIDv8 made of the first 128 bits of a SHA-256 of the four, so the
/// same event under the same policy always sends the same ids, and ids of different policies,
/// events or places differ. The event is named by its stream and version, which every store
/// keeps for it, rather than by its global position, which a copy to another store may change.
///
/// # Examples
///
/// ```
/// use switchyard_projections::command_id;
///
/// let id = command_id("large-withdrawals", "account-7", 3, 0);
/// assert_eq!(id, command_id("large-withdrawals", "account-7", 3, 0));
/// assert_ne!(id, command_id("large-withdrawals", "account-7", 3, 1));
/// assert_ne!(id, command_id("fraud-checks", "account-7", 3, 0));
/// assert_eq!(id.len(), 36);
/// ```
pub fn command_id(policy: &str, stream: &str, version: i64, index: usize) -> String {
    let mut hash = Sha256::new();
    // Each text preceded by its length, so no two different tuples hash the same bytes.
    for text in [policy, stream] {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update(version.to_le_bytes());
    hash.update((index as u64).to_le_bytes());
    let digest = hash.finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_pinned_uuidv8s() {
        // Pinned: commands sent before an upgrade must get the same ids after it, or their
        // redelivery would not be recognised. (Checked by hand: SHA-256 of the fields, each
        // text after its length as a little-endian u64, the version and index as little-endian
        // 64-bit integers; the first 16 bytes with the version 8 and RFC 9562 variant bits set.)
        let id = command_id("large-withdrawals", "account-7", 3, 0);
        assert_eq!(id, "9af91c11-eb53-8acb-8274-3d43f46156e3");
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        // The lengths keep the fields apart.
        assert_ne!(command_id("ab", "c", 0, 0), command_id("a", "bc", 0, 0));
    }

    struct Quiet;

    impl Policy for Quiet {
        type Event = ();

        async fn react(&mut self, _: &DecodedEvent<()>) -> Result<Vec<Message>, BoxError> {
            Ok(Vec::new())
        }
    }

    // Handed across tasks.
    const _: () = {
        const fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PolicyRunner<Quiet>>();
        assert_send_sync::<PolicyProjection<Quiet>>();
        assert_send_sync::<CommandFailed>();
    };
}
