//! The task that owns one live aggregate.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::FutureExt;
use switchyard_messaging::{DryRun, ErrorChain, IntoResponse, Message, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::{CommandOptions, Deleted, Inner, Job, Kind, Outcome, Registry, Request, Unload};
use crate::repo::RepoError;
use crate::{Aggregate, AggregateState, Command};

/// Whether the task goes on after a command.
enum Flow {
    Continue,
    /// End the task, for this reason (the unload span's `reason`): the state can no longer be
    /// trusted (a panic, a store failure, a commit that timed out, conflicts), so the next
    /// command reloads, or the unload rule asked for it.
    End(&'static str),
}

/// How a command was handled: its answer, and what the task does next.
struct Handled {
    response: Response,
    /// The aggregate's version the answer reports.
    version: Option<i64>,
    /// The global position of the last event the command appended, when the store reported it.
    position: Option<u64>,
    flow: Flow,
    /// The version before a commit and the timeout for a snapshot that may be due after it.
    snapshot: Option<(i64, std::time::Duration)>,
}

impl Handled {
    fn answer(response: Response, version: Option<i64>, flow: Flow) -> Self {
        Self {
            response,
            version,
            position: None,
            flow,
            snapshot: None,
        }
    }
}

/// Forgets the task in the registry when it ends, even by a panic.
struct Registration<A: Aggregate> {
    runtime: Arc<Inner<A>>,
    registry: Weak<Registry<A>>,
    id: String,
    generation: u64,
}

impl<A: Aggregate> Drop for Registration<A> {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove_if(&self.id, |_, live| live.generation == self.generation);
        }
        self.runtime.running.fetch_sub(1, Ordering::AcqRel);
        self.runtime.drained.notify_waiters();
    }
}

/// The request that ended a task, answered once the registry forgot it.
enum Ending {
    Unloaded(oneshot::Sender<()>),
    Deleted(oneshot::Sender<Deleted>, Result<(), RepoError>),
}

impl Ending {
    fn answer(self) {
        match self {
            Self::Unloaded(ack) => {
                let _ = ack.send(());
            }
            Self::Deleted(reply, result) => {
                let _ = reply.send(Deleted::Done(result));
            }
        }
    }
}

/// Where a command's answer goes, kept outside the command's future so that the answer to a
/// command whose handling panicked can still be sent.
struct Reply<A: Aggregate>(Option<oneshot::Sender<Outcome<A>>>);

impl<A: Aggregate> Reply<A> {
    fn done(&mut self, message: Message) {
        if let Some(reply) = self.0.take() {
            let _ = reply.send(Outcome::Done(message));
        }
    }

    /// Answers, if nothing was yet, that handling the command panicked.
    fn panicked(&mut self, reason: &str) {
        if let Some(reply) = self.0.take() {
            let _ = reply.send(Outcome::Panicked(reason.to_owned()));
        }
    }
}

fn panic_reason(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// `future`'s output, or `Elapsed` when it did not finish within `limit` of its first poll
/// returning pending. A future done on its first poll (a memory store's append) finishes as
/// under `tokio::time::timeout`, which polls it before looking at the clock, but without the
/// clock read and the runtime handle a timer costs: the deadline starts once it has to wait.
async fn within<F: std::future::Future>(
    limit: std::time::Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => tokio::time::timeout(limit, future).await,
    }
}

fn answer(mut message: Message, response: Response, version: Option<i64>) -> Message {
    message.aggregate_meta_mut().version = version;
    message.return_with(response)
}

/// [`answer`] for a command whose events were appended at `position` (when the store reported
/// it): the reply carries it ([`Message::position`]), so the caller can wait for a read model to
/// have seen them.
fn answer_appended(
    message: Message,
    response: Response,
    version: Option<i64>,
    position: Option<u64>,
) -> Message {
    let message = match position {
        Some(position) => message.with_position(position),
        None => message,
    };
    answer(message, response, version)
}

pub(super) async fn run<A: Aggregate>(
    runtime: Arc<Inner<A>>,
    registry: Weak<Registry<A>>,
    id: String,
    generation: u64,
    mut mailbox: mpsc::Receiver<Request<A>>,
) {
    let registration = Registration {
        runtime: runtime.clone(),
        registry,
        id: id.clone(),
        generation,
    };
    // A task starts for a request, which is already queued or about to be. A delete or an
    // unload needs no state, so the aggregate is loaded only for a command.
    let (job, reply) = match mailbox.recv().await {
        Some(Request::Command { job, reply }) => (job, reply),
        Some(Request::Unload(ack)) => {
            let last = Some(Ending::Unloaded(ack));
            return finish(registration, mailbox, last, "requested").await;
        }
        Some(Request::Delete {
            mode,
            expected,
            reply,
        }) => {
            let deleted = runtime.repo.delete(&id, mode, expected).await;
            let last = Some(Ending::Deleted(reply, deleted));
            return finish(registration, mailbox, last, "deleted").await;
        }
        None => return finish(registration, mailbox, None, "closed").await,
    };
    let mut live = LiveAggregate {
        runtime: &runtime,
        id: &id,
        // The handler checked the id before it named this task.
        stream: runtime.repo.stream_name(&id),
        state: None,
        unload_after_event: None,
        unload_by_state: None,
    };
    // An `apply` that panics on a recorded event panics every load: answered, not fatal.
    let loaded = match AssertUnwindSafe(runtime.repo.load(&id))
        .catch_unwind()
        .await
    {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(error)) => Err(error.into_response()),
        Err(panic) => Err(Response::error(format!(
            "aggregate {}-{id} panicked while loading: {}",
            A::NAME,
            panic_reason(panic.as_ref())
        ))),
    };
    match loaded {
        Ok(state) => live.state = state,
        Err(response) => {
            tracing::warn!(aggregate = A::NAME, id, error = %response, "aggregate failed to load");
            let _ = reply.send(Outcome::Done(answer(job.message, response.clone(), None)));
            let span = unload_span::<A>(&id, "load_failed");
            async move {
                drop(registration);
                mailbox.close();
                while let Some(request) = mailbox.recv().await {
                    answer_unloaded(request, &response);
                }
            }
            .instrument(span)
            .await;
            return;
        }
    }
    let mut first = Some((job, reply));
    // Answered only once the registry forgot the task, so whoever asked to unload or delete
    // the aggregate finds it no longer live when it hears back.
    let mut last = None;
    let reason = loop {
        let request = match first.take() {
            Some((job, reply)) => Request::Command { job, reply },
            None => match live.next(&mut mailbox).await {
                Ok(request) => request,
                Err(reason) => break reason,
            },
        };
        match request {
            Request::Command { job, reply } => {
                let mut reply = Reply(Some(reply));
                let flow = AssertUnwindSafe(live.handle(job, &mut reply))
                    .catch_unwind()
                    .await;
                match flow {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::End(reason)) => break reason,
                    // `decide` panics are caught where they happen; this is the aggregate's
                    // `apply`, `commit` or `rollback`, an unload rule, or the store.
                    Err(panic) => {
                        let reason = panic_reason(panic.as_ref());
                        tracing::error!(
                            aggregate = A::NAME,
                            id,
                            reason,
                            "aggregate task panicked; it will be reloaded"
                        );
                        reply.panicked(&format!(
                            "aggregate {}-{id} panicked while handling a command: {reason}; it \
                             will be reloaded from the store on the next command",
                            A::NAME
                        ));
                        break "failed";
                    }
                }
            }
            Request::Unload(ack) => {
                last = Some(Ending::Unloaded(ack));
                break "requested";
            }
            Request::Delete {
                mode,
                expected,
                reply,
            } => {
                let deleted = runtime.repo.delete(&id, mode, expected).await;
                last = Some(Ending::Deleted(reply, deleted));
                break "deleted";
            }
        }
        // A task that holds no aggregate (a creation that recorded nothing, a command for a
        // missing one) ends at once: what it knows is only that the aggregate did not exist when
        // it loaded, and another process may have created it since. Commands queued behind go
        // to a fresh task, which asks the store again.
        if live.state.is_none() {
            break "empty";
        }
    };
    finish(registration, mailbox, last, reason).await;
}

/// The span of a task's end. `reason`: `requested` (`unload`), `deleted`, `idle` (the idle
/// timeout), `scheduled` (an unload rule's delay), `unload_rule` (`Unload::Now`), `empty` (no
/// aggregate to hold), `closed` (shutdown, or every runtime handle dropped), `failed` (a panic,
/// a store failure or a commit timeout: the state is not trusted), `conflict` (conflicts beyond
/// the retries), `load_failed`.
fn unload_span<A: Aggregate>(id: &str, reason: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "switchyard.aggregate.unload",
        aggregate = A::NAME,
        id,
        reason
    )
}

/// Ends a task: forgets it in the registry, closes its mailbox, answers the request that ended
/// it, and hands every request still queued back to its sender.
async fn finish<A: Aggregate>(
    registration: Registration<A>,
    mut mailbox: mpsc::Receiver<Request<A>>,
    last: Option<Ending>,
    reason: &'static str,
) {
    let span = unload_span::<A>(&registration.id, reason);
    async move {
        // Forget the task first, then close: a command sent in between is handed back and goes
        // to a fresh task.
        drop(registration);
        mailbox.close();
        if let Some(last) = last {
            last.answer();
        }
        while let Some(request) = mailbox.recv().await {
            match request {
                Request::Command { job, reply } => {
                    let _ = reply.send(Outcome::Retry(job));
                }
                Request::Unload(ack) => {
                    let _ = ack.send(());
                }
                Request::Delete { reply, .. } => {
                    let _ = reply.send(Deleted::Retry);
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Answers a request that arrived at a task that could not load its aggregate.
fn answer_unloaded<A: Aggregate>(request: Request<A>, failure: &Response) {
    match request {
        Request::Command { job, reply } => {
            let message = answer(job.message, failure.clone(), None);
            let _ = reply.send(Outcome::Done(message));
        }
        Request::Unload(ack) => {
            let _ = ack.send(());
        }
        // A delete needs no state: sent again, it goes to a fresh task that deletes without
        // loading, and its caller gets the delete's own outcome.
        Request::Delete { reply, .. } => {
            let _ = reply.send(Deleted::Retry);
        }
    }
}

struct LiveAggregate<'a, A: Aggregate> {
    runtime: &'a Inner<A>,
    id: &'a str,
    /// The aggregate's stream, named once for every command.
    stream: String,
    state: Option<AggregateState<A>>,
    /// When an event matching an `unload_on_event` rule asked to unload: the earliest such
    /// request stands, since later commands do not undo the events.
    unload_after_event: Option<Instant>,
    /// When the `unload_on_state` rule last asked to unload: each commit asks again and its
    /// answer replaces the previous one, so `Never` cancels an earlier `After`.
    unload_by_state: Option<Instant>,
}

impl<A: Aggregate> LiveAggregate<'_, A> {
    /// The next request, or why the task should end: its mailbox closed (`closed`), it was idle
    /// for too long (`idle`), or an unload a rule scheduled is due (`scheduled`).
    async fn next(
        &mut self,
        mailbox: &mut mpsc::Receiver<Request<A>>,
    ) -> Result<Request<A>, &'static str> {
        let idle = self
            .runtime
            .config
            .idle_timeout
            .map(|idle| (Instant::now() + idle, "idle"));
        let scheduled = [self.unload_after_event, self.unload_by_state]
            .into_iter()
            .flatten()
            .min()
            .map(|at| (at, "scheduled"));
        let wake = [scheduled, idle]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at);
        let request = match wake {
            None => mailbox.recv().await,
            Some((wake, reason)) => tokio::select! {
                biased;
                request = mailbox.recv() => request,
                () = tokio::time::sleep_until(wake) => return Err(reason),
            },
        };
        request.ok_or("closed")
    }

    /// Runs a command and answers it; a panic while deciding, appending or folding is
    /// answered too, with the caller's own message (the handling only borrows it), and ends
    /// the task. A snapshot due is saved after the answer.
    async fn handle(&mut self, job: Job<A>, reply: &mut Reply<A>) -> Flow {
        let Job {
            mut message,
            command,
            kind,
            options,
        } = job;
        let span = tracing::debug_span!(
            "switchyard.aggregate.command",
            aggregate = A::NAME,
            id = self.id,
            message.id = message.id(),
            message.correlation_id = message.correlation_id(),
            service = message.service(),
        );
        let handling = self.handle_in_span(&mut message, command, kind, options);
        let handled = AssertUnwindSafe(handling.instrument(span.clone()))
            .catch_unwind()
            .await;
        let handled = match handled {
            Ok(handled) => handled,
            // `decide` panics are caught where they happen; this is the aggregate's `apply`,
            // `commit` or `rollback`, an unload rule, or the store.
            Err(panic) => {
                let reason = panic_reason(panic.as_ref());
                tracing::error!(
                    aggregate = A::NAME,
                    id = self.id,
                    reason,
                    "aggregate task panicked; it will be reloaded"
                );
                let response = Response::error(format!(
                    "aggregate {}-{} panicked while handling `{}`: {reason}; it will be \
                     reloaded from the store on the next command",
                    A::NAME,
                    self.id,
                    message.service()
                ));
                reply.done(answer(message, response, None));
                return Flow::End("failed");
            }
        };
        reply.done(answer_appended(
            message,
            handled.response,
            handled.version,
            handled.position,
        ));
        if let Some((before, timeout)) = handled.snapshot {
            self.snapshot_if_due(before, timeout).instrument(span).await;
        }
        handled.flow
    }

    /// After the answer and outside the commit timeout: a snapshot only speeds loading up, so a
    /// slow snapshot store may delay the next command but never fails this one. It is bounded
    /// all the same, by a timeout of its own.
    async fn snapshot_if_due(&self, before: i64, timeout: std::time::Duration) {
        let Some(state) = &self.state else {
            return;
        };
        if !self.runtime.repo.snapshot_due(before, state.version) {
            // No timer (nor clock read) for the usual command, which takes no snapshot.
            return;
        }
        let snapshot = tokio::time::timeout(
            timeout,
            self.runtime.repo.snapshot_if_due(self.id, before, state),
        );
        if snapshot.await.is_err() {
            tracing::warn!(
                aggregate = A::NAME,
                id = self.id,
                timeout_after_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "snapshot not saved in time"
            );
        }
    }

    async fn handle_in_span(
        &mut self,
        message: &mut Message,
        command: Arc<dyn Command<A>>,
        kind: Kind,
        options: CommandOptions,
    ) -> Handled {
        let CommandOptions {
            commit_timeout,
            metadata,
            refresh_before_read,
        } = options;
        tracing::debug!(name: "handle_msg", aggregate = A::NAME, message = message.service());
        let mut conflicts = 0;
        // A decision that appends nothing is checked against the store at most once.
        let mut refreshed = !refresh_before_read;
        loop {
            let creating = self.state.is_none();
            match (kind, &self.state) {
                (Kind::Existing, None) => {
                    let response = Response::NotFound {
                        id: self.id.to_owned(),
                    };
                    return Handled::answer(response, None, Flow::Continue);
                }
                (Kind::New, Some(state)) => {
                    let response = match state.processed.get(message.id()) {
                        Some(first) => first.clone(),
                        None => match self.looked_up(message).await {
                            Ok(Some(first)) => first,
                            Ok(None) => Response::AlreadyExists {
                                id: self.id.to_owned(),
                            },
                            Err(error) => return self.fail(error),
                        },
                    };
                    let version = Some(state.version);
                    return Handled::answer(response, version, Flow::Continue);
                }
                _ => {}
            }
            // A message in the window is answered from it. One the window may have dropped is
            // not looked up here: an append refuses it (`RepoError::Duplicate`, below), and
            // only a decision that appends nothing looks it up, after deciding.
            if let Some(state) = &self.state
                && let Some(first) = state.processed.get(message.id())
            {
                tracing::debug!(message.id = message.id(), "message already processed");
                let version = Some(state.version);
                return Handled::answer(first.clone(), version, Flow::Continue);
            }

            let fresh;
            let current = match &self.state {
                Some(state) => state,
                None => {
                    fresh = AggregateState::<A>::new(self.runtime.repo.processed_capacity());
                    &fresh
                }
            };
            let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
                command.decide(&current.state, message)
            }));
            let decided = match decided {
                Ok(decided) => decided,
                Err(panic) => {
                    let reason = format!(
                        "command `{}` panicked on {}-{}: {}",
                        message.service(),
                        A::NAME,
                        self.id,
                        panic_reason(panic.as_ref())
                    );
                    tracing::error!(
                        aggregate = A::NAME,
                        id = self.id,
                        reason,
                        "command panicked"
                    );
                    let response = Response::error(reason);
                    return Handled::answer(response, None, Flow::End("failed"));
                }
            };
            let version = current.version;
            let appends = message.dry_run() == DryRun::No
                && decided
                    .as_ref()
                    .is_ok_and(|events| !events.events.is_empty());
            if !appends && !refreshed && self.state.is_some() {
                // No append will check this decision's version: check the store instead, and
                // decide again if another writer moved the aggregate on.
                refreshed = true;
                match self.catch_up().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(error) => return self.fail(error),
                }
            }
            if !appends && self.state.is_some() {
                // Nothing will be appended, so no store will refuse a repeat: a message the
                // window may have dropped is looked up, and answered as the first time.
                match self.looked_up(message).await {
                    Ok(Some(first)) => {
                        tracing::debug!(message.id = message.id(), "message already processed");
                        self.rollback(message);
                        return Handled::answer(first, Some(version), Flow::Continue);
                    }
                    Ok(None) => {}
                    Err(error) => return self.fail(error),
                }
            }
            let events = match decided {
                Err(rejection) => {
                    self.rollback(message);
                    return Handled::answer(rejection, Some(version), Flow::Continue);
                }
                Ok(events) => events,
            };
            if message.dry_run() != DryRun::No {
                self.rollback(message);
                if message.dry_run() == DryRun::Verbose {
                    for event in &events.events {
                        let added = message.events().len();
                        // Only a verbose dry run copies the message: `add_event` takes it whole.
                        *message = message.clone().add_event(event);
                        if message.events().len() == added {
                            // The event does not encode: `add_event` answered that error,
                            // which stands.
                            let error = message.response().cloned().unwrap_or_else(|| {
                                Response::error("a dry run's event does not encode")
                            });
                            return Handled::answer(error, Some(version), Flow::Continue);
                        }
                    }
                }
                let response = Response::OkAt {
                    payload: events.reply,
                    version,
                };
                return Handled::answer(response, Some(version), Flow::Continue);
            }
            if events.events.is_empty() {
                let response = Response::OkAt {
                    payload: events.reply,
                    version,
                };
                if let Some(state) = &mut self.state {
                    state.processed.insert(message.id(), response.clone());
                }
                return Handled::answer(response, Some(version), Flow::Continue);
            }

            let mut working = self
                .state
                .take()
                .unwrap_or_else(|| AggregateState::new(self.runtime.repo.processed_capacity()));
            let delays: Vec<std::time::Duration> = self
                .runtime
                .config
                .unload_on_event
                .iter()
                .filter(|(rule, _)| events.events.iter().any(rule))
                .map(|(_, delay)| *delay)
                .collect();
            // The processed id goes into the state before it is saved, so a state-based aggregate
            // stores it too; versions are contiguous, so the new version is known in advance.
            let expected_version = version + i64::try_from(events.events.len()).unwrap_or(i64::MAX);
            let response = if creating {
                Response::Created {
                    id: self.id.to_owned(),
                    version: Some(expected_version),
                }
            } else {
                Response::OkAt {
                    payload: events.reply.clone(),
                    version: expected_version,
                }
            };
            working.processed.insert(message.id(), response.clone());
            // The append, the folding of the events and the `commit` hook; `version` once known.
            let commit_span = tracing::debug_span!(
                "switchyard.aggregate.commit",
                aggregate = A::NAME,
                id = self.id,
                events = events.events.len(),
                version = tracing::field::Empty,
            );
            let committed = within(
                commit_timeout,
                self.runtime.repo.record(
                    self.id,
                    &self.stream,
                    &mut working,
                    &events.events,
                    message,
                    (*metadata).clone(),
                ),
            )
            .instrument(commit_span.clone())
            .await;
            match committed {
                Err(_elapsed) => {
                    tracing::warn!(
                        name: "aggregate_commit_timeout",
                        aggregate = A::NAME,
                        id = self.id,
                        message = message.service(),
                        timeout_after_ms = u64::try_from(commit_timeout.as_millis()).unwrap_or(u64::MAX),
                    );
                    let response = Response::error(format!(
                        "commit of {}-{} did not finish within {commit_timeout:?}; its outcome is \
                         unknown and the aggregate will be reloaded",
                        A::NAME,
                        self.id
                    ));
                    return Handled::answer(response, None, Flow::End("failed"));
                }
                Ok(Ok(appended)) => {
                    let new_version = appended.version;
                    commit_span.record("version", new_version);
                    commit_span.in_scope(|| working.state.commit(message));
                    let unload = self
                        .runtime
                        .config
                        .unload_on_state
                        .as_ref()
                        .map_or(Unload::Never, |rule| rule(&working.state));
                    self.state = Some(working);
                    // The clock is read only for a rule that schedules an unload.
                    if let Some(delay) = delays.into_iter().min() {
                        let due = Instant::now() + delay;
                        self.unload_after_event =
                            Some(self.unload_after_event.map_or(due, |d| d.min(due)));
                    }
                    let flow = match unload {
                        Unload::Now => Flow::End("unload_rule"),
                        Unload::After(delay) => {
                            self.unload_by_state = Some(Instant::now() + delay);
                            Flow::Continue
                        }
                        Unload::Never => {
                            self.unload_by_state = None;
                            Flow::Continue
                        }
                    };
                    return Handled {
                        response,
                        version: Some(new_version),
                        position: appended.position,
                        flow,
                        snapshot: Some((version, commit_timeout)),
                    };
                }
                Ok(Err(RepoError::Duplicate { version, .. })) => {
                    // A repeat the window had dropped, refused by the store: nothing was
                    // appended, nor applied to `working` (an event store refuses before the
                    // events are folded). Its decision is discarded and the first answer given.
                    tracing::debug!(
                        message.id = message.id(),
                        "message already processed (refused by the store)"
                    );
                    working.state.rollback(message);
                    let first = match self
                        .runtime
                        .repo
                        .duplicate_answer(self.id, message.id(), version)
                        .await
                    {
                        Ok(first) => first,
                        Err(error) => return self.fail(error),
                    };
                    // The window now says so, instead of the answer it was given for this run.
                    working.processed.insert(message.id(), first.clone());
                    let current = Some(working.version);
                    self.state = Some(working);
                    return Handled::answer(first, current, Flow::Continue);
                }
                Ok(Err(RepoError::Conflict { expected, actual })) => {
                    if conflicts < self.runtime.config.conflict_retries {
                        conflicts += 1;
                        tracing::debug!(
                            expected,
                            ?actual,
                            attempt = conflicts,
                            "version conflict; reloading"
                        );
                        match self.runtime.repo.load(self.id).await {
                            Ok(state) => {
                                self.state = state;
                                continue;
                            }
                            Err(error) => return self.fail(error),
                        }
                    }
                    let response = Response::Conflict { expected, actual };
                    return Handled::answer(response, None, Flow::End("conflict"));
                }
                Ok(Err(error)) => return self.fail(error),
            }
        }
    }

    /// The first answer to `message`, not in the in-memory window, looked up in the store if the
    /// window may have dropped it: for a creation of an aggregate that exists, and for a
    /// decision that appends nothing (an appending one is refused by the store instead).
    ///
    /// A window that never dropped an id holds every message that recorded events since the
    /// aggregate was loaded from the store, so the look-up is skipped. An id a writer elsewhere
    /// (another runtime) recorded since then is not in it either way: deciding again on the
    /// stale state conflicts, and the reload brings the id in.
    async fn looked_up(&self, message: &Message) -> Result<Option<Response>, RepoError> {
        let complete = self
            .state
            .as_ref()
            .is_some_and(|state| !state.processed.may_have_forgotten());
        if !self.runtime.config.idempotency_lookup || complete {
            return Ok(None);
        }
        self.runtime.repo.first_answer(self.id, message.id()).await
    }

    /// Brings the loaded aggregate up to the store: whether the store had moved on. On an
    /// error the aggregate is dropped (the caller fails the command), so the next one reloads.
    async fn catch_up(&mut self) -> Result<bool, RepoError> {
        let Some(state) = self.state.take() else {
            return Ok(false);
        };
        let (state, moved) = self.runtime.repo.catch_up(self.id, state).await?;
        self.state = Some(state);
        Ok(moved)
    }

    /// Runs the aggregate's `rollback` hook on its state (a default one when it is new).
    fn rollback(&self, message: &Message) {
        match &self.state {
            Some(state) => state.state.rollback(message),
            None => A::default().rollback(message),
        }
    }

    fn fail(&mut self, error: RepoError) -> Handled {
        tracing::warn!(aggregate = A::NAME, id = self.id, error = %ErrorChain(&error), "aggregate store failed");
        self.state = None;
        Handled::answer(error.into_response(), None, Flow::End("failed"))
    }
}

#[cfg(test)]
mod within_tests {
    use std::time::Duration;

    use super::within;

    #[tokio::test(start_paused = true)]
    async fn a_future_done_on_its_first_poll_is_not_timed_even_with_no_time_left() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await.ok(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_past_the_limit_times_out() {
        let waits = tokio::time::sleep(Duration::from_secs(2));
        assert!(within(Duration::from_secs(1), waits).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_less_than_the_limit_finishes() {
        let waits = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            7
        };
        assert_eq!(within(Duration::from_secs(1), waits).await.ok(), Some(7));
    }
}
