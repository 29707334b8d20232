//! The live aggregates: each command runs on its caller's task while it holds its aggregate's
//! lock, so commands to one aggregate run in order, different aggregates concurrently.

mod command;
mod slot;
mod watchdog;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use switchyard_messaging::{Message, Response};
use tokio::time::Instant;

use self::command::Flow;
use self::slot::{Guard, Slot, retire};

use crate::repo::{Repo, RepoError};
use crate::store::{DeleteMode, ExpectedVersion};
use crate::{Aggregate, Command};

/// When to unload an aggregate, as decided by an `unload_on_state` rule.
///
/// The rule is asked after every commit, and its latest answer replaces the earlier ones: a
/// `Never` cancels a pending `After`, and a second `After` starts its delay anew. (Unloads asked
/// for by `unload_on_event` rules and the idle timeout are not affected.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unload {
    /// Right after this command.
    Now,
    /// After a delay, unless a later commit's answer differs.
    After(Duration),
    /// Keep it loaded (cancelling an earlier `After`).
    Never,
}

/// How a command addresses its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// It must not exist yet.
    New,
    /// It must exist.
    Existing,
    /// Created when its stream does not exist.
    MaybeNew,
}

/// The handler's settings a command runs with.
#[derive(Clone)]
pub(crate) struct CommandOptions {
    /// How long the append may take.
    pub(crate) commit_timeout: Duration,
    /// User metadata recorded with every event.
    pub(crate) metadata: Arc<BTreeMap<String, String>>,
    /// Whether a decision that appends nothing is checked against the store first.
    pub(crate) refresh_before_read: bool,
}

type UnloadOnEvent<A> = (
    Box<dyn Fn(&<A as Aggregate>::Event) -> bool + Send + Sync>,
    Duration,
);
type UnloadOnState<A> = Box<dyn Fn(&A) -> Unload + Send + Sync>;

struct Config<A: Aggregate> {
    mailbox: usize,
    idle_timeout: Option<Duration>,
    unload_on_event: Vec<UnloadOnEvent<A>>,
    unload_on_state: Option<UnloadOnState<A>>,
    conflict_retries: usize,
    idempotency_lookup: bool,
}

/// What the runtime's handles share.
pub(crate) struct Inner<A: Aggregate> {
    repo: Repo<A>,
    config: Config<A>,
    closed: AtomicBool,
}

/// The live aggregates, by id. Only runtime handles own it (watchdogs hold a `Weak`), so when
/// the last handle is dropped every aggregate's state goes with it.
pub(crate) type Registry<A> = DashMap<String, Slot<A>, foldhash::fast::RandomState>;

/// The live aggregates of type `A` on this node (x3m's `LocalAggregates` and their supervision).
///
/// A command runs on its caller's task (the dispatch's), holding its aggregate's lock from the
/// load to the apply, as cqrs-es runs commands, while the aggregate's state, its window of
/// processed message ids and its version stay cached between commands. The first command for
/// an id loads the aggregate through the [`Repo`]; later commands find it in a concurrent
/// registry, and wait for its lock in the order they came when another command holds it. A
/// command that panics, or a store that fails, unloads only that aggregate: the caller gets
/// `Response::Error`, the registry forgets it, and the next command reloads from the store. A
/// command cut short (its caller's future dropped, at a dispatch deadline say) leaves no state
/// cached either: the next command reloads, as the append may or may not have been stored.
/// No task is spawned for commands; a runtime with an idle timeout or unload rules runs one
/// small timer task per live aggregate, and a due snapshot is saved by a task of its own after
/// the caller was answered. Several runtimes (of one or more types) can share a process. Cheap
/// to clone.
pub struct AggregateRuntime<A: Aggregate> {
    inner: Arc<Inner<A>>,
    live: Arc<Registry<A>>,
}

impl<A: Aggregate> Clone for AggregateRuntime<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            live: self.live.clone(),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for AggregateRuntime<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateRuntime")
            .field("aggregate", &A::NAME)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

/// Settings of an [`AggregateRuntime`].
#[must_use]
pub struct RuntimeBuilder<A: Aggregate> {
    repo: Repo<A>,
    config: Config<A>,
}

impl<A: Aggregate> RuntimeBuilder<A> {
    /// How many commands may wait for one aggregate while another command holds it (default
    /// 4,096); beyond that a command is answered `Response::Error` at once rather than queued
    /// without bound.
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.config.mailbox = capacity.max(1);
        self
    }

    /// Unloads an aggregate that received no command for `idle` (passivation).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = Some(idle);
        self
    }

    /// Unloads an aggregate `delay` after it recorded an event matching `rule` (the earliest
    /// such deadline stands: later commands do not undo the event).
    pub fn unload_on_event(
        mut self,
        rule: impl Fn(&A::Event) -> bool + Send + Sync + 'static,
        delay: Duration,
    ) -> Self {
        self.config.unload_on_event.push((Box::new(rule), delay));
        self
    }

    /// After each commit, asks `rule` whether the aggregate's new state should be unloaded; the
    /// latest answer stands (see [`Unload`]).
    pub fn unload_on_state(mut self, rule: impl Fn(&A) -> Unload + Send + Sync + 'static) -> Self {
        self.config.unload_on_state = Some(Box::new(rule));
        self
    }

    /// How many times a command is decided again on reloaded state after a version conflict
    /// (default 3) before the caller gets `Response::Conflict`.
    pub fn conflict_retries(mut self, retries: usize) -> Self {
        self.config.conflict_retries = retries;
        self
    }

    /// Whether a message id not in the aggregate's in-memory window is looked up in the store
    /// when its decision appends nothing (default on), so that a repeat older than the window is
    /// answered as the first time even then. Only an aggregate whose window has dropped ids (one
    /// that recorded events for more messages than the repo's `processed_capacity`) pays this
    /// indexed read, on a rejection, a read or a dry run with a new id; a command that appends
    /// never does: the event store refuses a repeat's append ([`AppendError::Duplicate`]), and
    /// only then is the first answer looked up, whatever this setting. A repeat of an id that
    /// another runtime on the same store recorded since this one loaded the aggregate is caught
    /// by the version conflict and reload first (so with `conflict_retries(0)` it is answered
    /// `Conflict`).
    ///
    /// [`AppendError::Duplicate`]: crate::store::AppendError::Duplicate
    pub fn idempotency_lookup(mut self, on: bool) -> Self {
        self.config.idempotency_lookup = on;
        self
    }

    /// Builds the runtime.
    pub fn build(self) -> AggregateRuntime<A> {
        AggregateRuntime {
            inner: Arc::new(Inner {
                repo: self.repo,
                config: self.config,
                closed: AtomicBool::new(false),
            }),
            live: Arc::new(DashMap::default()),
        }
    }
}

impl<A: Aggregate> From<Repo<A>> for AggregateRuntime<A> {
    /// A runtime with default settings over `repo`.
    fn from(repo: Repo<A>) -> Self {
        Self::new(repo)
    }
}

impl<A: Aggregate> From<RuntimeBuilder<A>> for AggregateRuntime<A> {
    /// The runtime `builder` describes.
    fn from(builder: RuntimeBuilder<A>) -> Self {
        builder.build()
    }
}

impl<A: Aggregate> AggregateRuntime<A> {
    /// A runtime with default settings.
    pub fn new(repo: Repo<A>) -> Self {
        Self::builder(repo).build()
    }

    /// Settings for a runtime over `repo`.
    pub fn builder(repo: Repo<A>) -> RuntimeBuilder<A> {
        RuntimeBuilder {
            repo,
            config: Config {
                mailbox: 4_096,
                idle_timeout: None,
                unload_on_event: Vec::new(),
                unload_on_state: None,
                conflict_retries: 3,
                idempotency_lookup: true,
            },
        }
    }

    /// The repo the runtime loads and saves through.
    pub fn repo(&self) -> &Repo<A> {
        &self.inner.repo
    }

    /// How many aggregates are loaded.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Whether aggregate `id` is loaded.
    pub fn is_live(&self, id: &str) -> bool {
        self.live.contains_key(id)
    }

    /// Runs `command` on the aggregate `message` names in its `aggregate_meta.id`, on the
    /// caller's task.
    pub(crate) async fn execute(
        &self,
        command: (Kind, &dyn Command<A>),
        message: Message,
        options: &CommandOptions,
    ) -> Message {
        // The lock of an aggregate unloaded while this command waited for it, kept until the
        // command holds the lock of its next load: the commands that waited behind this one
        // stay behind it.
        let mut retired = None;
        loop {
            if self.inner.closed.load(Ordering::Acquire) {
                return message.return_with(shut_down::<A>());
            }
            let id = message.aggregate_meta().id.as_deref().unwrap_or_default();
            let mut held = match self.acquire(id).await {
                Ok(held) => held,
                Err(refusal) => return message.return_with(refusal),
            };
            drop(retired.take());
            if held.retired {
                retired = Some(held);
                continue;
            }
            let scheduled = held.schedule.scheduled();
            let ran = command::run(&self.inner, &mut held, command, message, options).await;
            match ran.flow {
                Flow::End(reason) => retire(&self.live, &mut held, reason),
                Flow::Continue => {
                    self.keep_watch(&mut held, scheduled);
                    if let Some(before) = ran.snapshot {
                        self.snapshot_if_due(held, before, options.commit_timeout);
                    }
                }
            }
            return ran.message;
        }
    }

    /// Aggregate `id`'s lock, once the commands that came before have let it go; `Err` with the
    /// answer to give when too many wait for it already, or the runtime is shut down.
    async fn acquire(&self, id: &str) -> Result<Guard<A>, Response> {
        let slot = match self.live.get(id) {
            // The usual case, a loaded aggregate no command holds: its lock is taken under the
            // registry's read lock, without a copy of the slot.
            Some(slot) => match slot.lock.clone().try_lock_owned() {
                Ok(held) => return Ok(held),
                Err(_) => slot.clone(),
            },
            None => self.slot_for(id).ok_or_else(shut_down::<A>)?,
        };
        if let Ok(held) = slot.lock.clone().try_lock_owned() {
            return Ok(held);
        }
        let mailbox = self.inner.config.mailbox;
        let Some(_waiting) = slot.wait(mailbox) else {
            return Err(Response::error(format!(
                "aggregate {}-{id} is overloaded: {mailbox} commands are waiting",
                A::NAME,
            )));
        };
        Ok(slot.lock.clone().lock_owned().await)
    }

    /// Aggregate `id`'s slot, registered (not loaded yet) if it is not live; `None` once the
    /// runtime is shut down.
    fn slot_for(&self, id: &str) -> Option<Slot<A>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        match self.live.entry(id.to_owned()) {
            Entry::Occupied(live) => Some(live.get().clone()),
            Entry::Vacant(vacant) => {
                // Checked again under the registry's lock: `shutdown` sets `closed` before it
                // goes through the registry, so either it finds the slot registered here and
                // unloads it, or this sees `closed` and registers nothing.
                if self.inner.closed.load(Ordering::Acquire) {
                    return None;
                }
                tracing::debug!(name: "new_aggr_spawned", aggregate = A::NAME, id);
                let slot = Slot::new(id.to_owned(), self.inner.repo.stream_name(id));
                vacant.insert(slot.clone());
                Some(slot)
            }
        }
    }

    /// After a command that kept the aggregate loaded: notes the time for the idle timeout and
    /// starts the aggregate's watchdog, or wakes it when the command moved a scheduled unload
    /// (`scheduled`: the schedule before the command). Nothing for a runtime without an idle
    /// timeout or unload rules.
    fn keep_watch(&self, held: &mut Guard<A>, scheduled: (Option<Instant>, Option<Instant>)) {
        let config = &self.inner.config;
        if config.idle_timeout.is_none()
            && config.unload_on_event.is_empty()
            && config.unload_on_state.is_none()
        {
            return;
        }
        if config.idle_timeout.is_some() {
            held.schedule.last_command = Some(Instant::now());
        }
        if let Some(watchdog) = &held.watchdog {
            if held.schedule.scheduled() != scheduled {
                watchdog.moved.notify_one();
            }
        } else {
            let watchdog = watchdog::start(
                Arc::downgrade(&self.live),
                Guard::mutex(held),
                config.idle_timeout,
            );
            held.watchdog = Some(watchdog);
        }
    }

    /// Saves a snapshot of the aggregate `held` guards if one is due since version `before`: in
    /// a task of its own, which keeps the lock until it is done (the next command waits for it,
    /// as it would for a command), so the caller is answered first.
    fn snapshot_if_due(&self, held: Guard<A>, before: i64, timeout: Duration) {
        let due = held
            .state
            .as_ref()
            .is_some_and(|state| self.inner.repo.snapshot_due(before, state.version));
        if !due {
            // No task, timer nor clock read for the usual command, which takes no snapshot.
            return;
        }
        let runtime = self.inner.clone();
        tokio::spawn(async move {
            command::snapshot_if_due(&runtime, &held, before, timeout).await;
        });
    }

    /// Unloads aggregate `id` once the commands waiting for it before this call have run.
    /// Returns whether it was loaded.
    pub async fn unload(&self, id: &str) -> bool {
        let Some(lock) = self.live.get(id).map(|slot| slot.lock.clone()) else {
            return false;
        };
        let mut held = lock.lock_owned().await;
        if held.retired {
            return false;
        }
        retire(&self.live, &mut held, "requested");
        true
    }

    /// Deletes aggregate `id`'s stream and unloads it, after the commands waiting for it
    /// before this call; commands sent after it run on a fresh load (and find no aggregate,
    /// unless one was created since).
    ///
    /// The delete holds the aggregate's lock, taken for it when the aggregate is not loaded (it
    /// then deletes without loading), so it never runs beside a command of this runtime, and
    /// nothing keeps the state from before the delete, which could otherwise continue a
    /// soft-deleted stream at its last version (also when the delete is cut short). (An
    /// aggregate loaded by another runtime on the same store can still do so; see
    /// [`DeleteMode::Soft`].) Once the runtime is shut down, the stream is deleted directly.
    ///
    /// # Errors
    ///
    /// [`RepoError::Conflict`] when the stream is not at `expected`; the store's error.
    pub async fn delete(
        &self,
        id: &str,
        mode: DeleteMode,
        expected: ExpectedVersion,
    ) -> Result<(), RepoError> {
        // A bad id is refused before it names a slot.
        self.inner.repo.check_id(id)?;
        loop {
            let Some(slot) = self.slot_for(id) else {
                return self.inner.repo.delete(id, mode, expected).await;
            };
            let mut held = slot.lock.lock_owned().await;
            if held.retired {
                continue;
            }
            held.state = None;
            let deleted = self.inner.repo.delete(id, mode, expected).await;
            retire(&self.live, &mut held, "deleted");
            return deleted;
        }
    }

    /// Stops taking commands, lets the commands already waiting for a loaded aggregate finish,
    /// and returns once they have, and every snapshot under way with them; every aggregate is
    /// unloaded.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let slots: Vec<Slot<A>> = self.live.iter().map(|live| live.value().clone()).collect();
        for slot in slots {
            let mut held = slot.lock.lock_owned().await;
            if !held.retired {
                retire(&self.live, &mut held, "closed");
            }
        }
    }
}

/// The answer to a command once the runtime is shut down.
fn shut_down<A: Aggregate>() -> Response {
    Response::error(format!("the {} runtime is shut down", A::NAME))
}

#[cfg(test)]
mod tests;
