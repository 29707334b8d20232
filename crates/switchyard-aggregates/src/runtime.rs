//! One task per live aggregate: commands to one aggregate run in order, different aggregates
//! concurrently.

mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use switchyard_messaging::{Message, Response};
use tokio::sync::{Notify, mpsc, oneshot};

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

pub(crate) struct Job<A: Aggregate> {
    pub(crate) message: Message,
    pub(crate) command: Arc<dyn Command<A>>,
    pub(crate) kind: Kind,
    pub(crate) options: CommandOptions,
}

impl<A: Aggregate> Job<A> {
    /// The aggregate the command is for, as the handler set it in the message.
    fn aggregate_id(&self) -> &str {
        self.message
            .aggregate_meta()
            .id
            .as_deref()
            .unwrap_or_default()
    }
}

/// The answer when the command's message was lost with a task that died before answering (or
/// a panic before handling began): a message of its own carrying `response`.
fn lost(response: Response) -> Message {
    Message::new("aggregate").return_with(response)
}

pub(crate) enum Outcome<A: Aggregate> {
    Done(Message),
    /// The task ended before running the job: submit it again (to a fresh task).
    Retry(Job<A>),
    /// Handling the job panicked before it began, losing the message; the task ended. The
    /// error text to answer with.
    Panicked(String),
}

/// The answer to a delete request.
pub(crate) enum Deleted {
    Done(Result<(), RepoError>),
    /// The task ended before running the delete: submit it again (to a fresh task).
    Retry,
}

pub(crate) enum Request<A: Aggregate> {
    Command {
        job: Job<A>,
        reply: oneshot::Sender<Outcome<A>>,
    },
    Unload(oneshot::Sender<()>),
    Delete {
        mode: DeleteMode,
        expected: ExpectedVersion,
        reply: oneshot::Sender<Deleted>,
    },
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

pub(crate) struct Live<A: Aggregate> {
    sender: mpsc::Sender<Request<A>>,
    generation: u64,
}

/// What aggregate tasks share with the runtime.
pub(crate) struct Inner<A: Aggregate> {
    repo: Repo<A>,
    config: Config<A>,
    generations: AtomicU64,
    running: AtomicUsize,
    drained: Notify,
    closed: AtomicBool,
}

/// The live aggregates' mailboxes. Only runtime handles own it (tasks hold a `Weak`), so when
/// the last handle is dropped the mailboxes close and every task ends.
pub(crate) type Registry<A> = DashMap<String, Live<A>, foldhash::fast::RandomState>;

/// The live aggregates of type `A` on this node (x3m's `LocalAggregates` and their supervision).
///
/// The first command for an id starts a task that loads the aggregate through the [`Repo`];
/// later commands find it in a concurrent registry and queue in its mailbox. A command that
/// panics, or a store that fails, ends only that aggregate's task: the caller gets
/// `Response::Error`, the registry forgets the task, and the next command reloads from the store.
/// Several runtimes (of one or more types) can share a process. Cheap to clone.
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
    /// How many commands may wait for one aggregate (default 4,096); beyond that a command is
    /// answered `Response::Error` at once rather than queued without bound.
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
                generations: AtomicU64::new(0),
                running: AtomicUsize::new(0),
                drained: Notify::new(),
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

    /// Runs `command` on the aggregate `message` names in its `aggregate_meta.id`.
    pub(crate) async fn execute(
        &self,
        kind: Kind,
        command: Arc<dyn Command<A>>,
        message: Message,
        options: CommandOptions,
    ) -> Message {
        // The message travels with the command and comes back answered, also when handling
        // it panics; only a task that dies without answering (its runtime dropped) loses it.
        let mut job = Job {
            message,
            command,
            kind,
            options,
        };
        loop {
            if self.inner.closed.load(Ordering::Acquire) {
                let response = Response::error(format!("the {} runtime is shut down", A::NAME));
                return job.message.return_with(response);
            }
            let (reply, answer) = oneshot::channel();
            // No sender is held while waiting: that would keep the task's mailbox open after
            // shutdown dropped the registry's.
            let sent = match self.live.get(job.aggregate_id()) {
                // The usual case, a loaded aggregate: its mailbox is used under the registry's
                // read lock rather than through a clone of its sender, which would cost two
                // atomic read-modify-writes on the mailbox's shared counters per command.
                Some(live) => live.sender.try_send(Request::Command { job, reply }),
                None => match self.sender_for(job.aggregate_id()) {
                    Some(sender) => sender.try_send(Request::Command { job, reply }),
                    None => {
                        let response =
                            Response::error(format!("the {} runtime is shut down", A::NAME));
                        return job.message.return_with(response);
                    }
                },
            };
            if let Err(error) = sent {
                let full = matches!(error, mpsc::error::TrySendError::Full(_));
                let Request::Command { job: returned, .. } = error.into_inner() else {
                    // try_send hands back what it was given, and that was a command.
                    return lost(Response::error("command lost in the mailbox"));
                };
                if full {
                    let response = Response::error(format!(
                        "aggregate {}-{} is overloaded: {} commands are waiting",
                        A::NAME,
                        returned.aggregate_id(),
                        self.inner.config.mailbox
                    ));
                    return returned.message.return_with(response);
                }
                // The task ended between the look-up and the send; start a fresh one.
                job = returned;
                continue;
            }
            match answer.await {
                Ok(Outcome::Done(reply)) => return reply,
                Ok(Outcome::Retry(returned)) => job = returned,
                Ok(Outcome::Panicked(reason)) => return lost(Response::error(reason)),
                Err(_) => {
                    return lost(Response::error(format!(
                        "an aggregate {} task failed while running the command; the aggregate \
                         will be reloaded from the store on the next command",
                        A::NAME
                    )));
                }
            }
        }
    }

    /// The mailbox of aggregate `id`, starting its task if it is not loaded; `None` once the
    /// runtime is shut down.
    fn sender_for(&self, id: &str) -> Option<mpsc::Sender<Request<A>>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        if let Some(live) = self.live.get(id) {
            return Some(live.sender.clone());
        }
        match self.live.entry(id.to_owned()) {
            Entry::Occupied(live) => Some(live.get().sender.clone()),
            Entry::Vacant(vacant) => {
                // Checked again under the registry's lock: `shutdown` sets `closed` before it
                // empties the registry, so either it sees the task registered here and drops its
                // mailbox, or this sees `closed` and starts nothing. The task is counted before
                // the lock is released, so `shutdown` waits for it too.
                if self.inner.closed.load(Ordering::Acquire) {
                    return None;
                }
                let (sender, receiver) = mpsc::channel(self.inner.config.mailbox);
                let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
                self.inner.running.fetch_add(1, Ordering::AcqRel);
                vacant.insert(Live {
                    sender: sender.clone(),
                    generation,
                });
                tracing::debug!(name: "new_aggr_spawned", aggregate = A::NAME, id);
                tokio::spawn(task::run(
                    self.inner.clone(),
                    Arc::downgrade(&self.live),
                    id.to_owned(),
                    generation,
                    receiver,
                ));
                Some(sender)
            }
        }
    }

    /// Unloads aggregate `id` once the commands queued before this call have run. Returns
    /// whether it was loaded.
    pub async fn unload(&self, id: &str) -> bool {
        let Some(sender) = self.live.get(id).map(|l| l.sender.clone()) else {
            return false;
        };
        let (ack, done) = oneshot::channel();
        if sender.send(Request::Unload(ack)).await.is_err() {
            return false;
        }
        done.await.is_ok()
    }

    /// Deletes aggregate `id`'s stream and unloads it, after the commands queued before this
    /// call; commands sent after it run on a fresh load (and find no aggregate, unless one was
    /// created since).
    ///
    /// The delete goes through the aggregate's task, started for it when the aggregate is not
    /// loaded (it then deletes without loading), so it never runs beside a command: no task of
    /// this runtime keeps the state from before the delete, which could otherwise continue a
    /// soft-deleted stream at its last version. (An aggregate loaded by another runtime on the
    /// same store can still do so; see [`DeleteMode::Soft`].) Once the runtime is shut down, the
    /// stream is deleted directly.
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
        // A bad id is refused before it names a task.
        self.inner.repo.check_id(id)?;
        loop {
            let Some(sender) = self.sender_for(id) else {
                return self.inner.repo.delete(id, mode, expected).await;
            };
            let (reply, done) = oneshot::channel();
            let request = Request::Delete {
                mode,
                expected,
                reply,
            };
            let sent = sender.send(request).await;
            drop(sender);
            if sent.is_err() {
                // The task ended between the look-up and the send; start a fresh one.
                continue;
            }
            match done.await {
                Ok(Deleted::Done(result)) => return result,
                Ok(Deleted::Retry) => {}
                // The task died without answering (a panicking store): delete directly.
                Err(_) => return self.inner.repo.delete(id, mode, expected).await,
            }
        }
    }

    /// Stops taking commands, lets every loaded aggregate finish the commands already queued,
    /// and returns once all their tasks have ended.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Dropping the registry's senders ends each task once its mailbox is empty.
        let ids: Vec<String> = self.live.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            self.live.remove(&id);
        }
        loop {
            let drained = self.inner.drained.notified();
            if self.inner.running.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests;
