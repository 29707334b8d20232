//! One command on one live aggregate, run on the caller's task while it holds the aggregate's
//! lock: load (when nothing is cached), idempotency, decide, commit, conflict retry.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use switchyard_messaging::{DryRun, ErrorChain, IntoResponse, Message, Response, panic_text};
use tokio::time::Instant;
use tracing::Instrument;

use super::slot::{Held, Schedule};
use super::{CommandOptions, Inner, Kind, Unload};
use crate::repo::RepoError;
use crate::{Aggregate, AggregateState, Command};

/// Whether the aggregate stays loaded after a command.
pub(super) enum Flow {
    Continue,
    /// Unload it, for this reason (the unload span's `reason`): the state can no longer be
    /// trusted (a panic, a store failure, a commit that timed out, conflicts), so the next
    /// command reloads, or the unload rule asked for it.
    End(&'static str),
}

/// How a command was handled: its answer, and what becomes of the aggregate.
struct Handled {
    response: Response,
    /// The aggregate's version the answer reports.
    version: Option<i64>,
    /// The global position of the last event the command appended, when the store reported it.
    position: Option<u64>,
    flow: Flow,
    /// The version before a commit, for a snapshot that may be due after it.
    snapshot: Option<i64>,
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

/// A command run: the caller's message, answered, and what becomes of the aggregate.
pub(super) struct Ran {
    pub(super) message: Message,
    pub(super) flow: Flow,
    /// The version before the command's commit, when a snapshot may be due after it.
    pub(super) snapshot: Option<i64>,
}

/// `future`'s output, or `Elapsed` when it did not finish within `limit` of its first poll
/// returning pending. A future done on its first poll (a memory store's append) finishes as
/// under `tokio::time::timeout`, which polls it before looking at the clock, but without the
/// clock read and the runtime handle a timer costs: the deadline starts once it has to wait.
///
/// `future` comes pinned by its caller, so that its state is stored once, in the caller's
/// future, rather than also in this one's.
async fn within<F: std::future::Future>(
    limit: std::time::Duration,
    mut future: std::pin::Pin<&mut F>,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(output) => Ok(output),
        // Boxed, as every path only a slow command takes: see `run`.
        std::task::Poll::Pending => Box::pin(tokio::time::timeout(limit, future)).await,
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

/// Runs `command` on the aggregate whose lock the caller holds (`held`), and answers
/// `message`.
///
/// The cached state is taken out of `held` for the whole command and put back only once the
/// command is through, so a command cut short at any await (its caller's future dropped, at a
/// dispatch deadline say, perhaps after the store accepted its append but before the events
/// were applied) leaves nothing cached, and the next command reloads from the store. A panic
/// while loading, deciding, appending or folding is answered with the caller's own message
/// (the handling only borrows it) and unloads the aggregate.
///
/// The future of a command is boxed once per call (by the router), so it is kept small: the
/// paths only some commands take (a load, a look-up of an older message id, a refresh, a
/// conflict's reload, a commit that has to wait) are boxed where they are taken. A box of a
/// kilobyte or more is a "large" request to glibc's malloc, which first consolidates its free
/// lists of small blocks, a cost the profile of 64 callers showed on every command.
pub(super) async fn run<A: Aggregate>(
    runtime: &Inner<A>,
    held: &mut Held<A>,
    (kind, command): (Kind, &dyn Command<A>),
    message: Message,
    options: &CommandOptions,
) -> Ran {
    let Held {
        id,
        stream,
        state,
        schedule,
        ..
    } = held;
    let id = id.as_str();
    let cached = state;
    let state = match cached.take() {
        Some(state) => Some(state),
        None => match Box::pin(load(runtime, id)).await {
            Ok(state) => state,
            Err(response) => {
                tracing::warn!(aggregate = A::NAME, id, error = %response, "aggregate failed to load");
                return Ran {
                    message: answer(message, response, None),
                    flow: Flow::End("load_failed"),
                    snapshot: None,
                };
            }
        },
    };
    let mut live = LiveAggregate {
        runtime,
        id,
        stream,
        state,
        schedule,
    };
    let mut ran = live.handle(message, kind, command, options).await;
    match (&ran.flow, live.state) {
        (Flow::Continue, Some(state)) => *cached = Some(state),
        // An aggregate that does not exist (a creation that recorded nothing, a command for a
        // missing one) is not kept: what this node knows is only that it did not exist when it
        // loaded, and another process may have created it since. The next command asks the
        // store again.
        (Flow::Continue, None) => ran.flow = Flow::End("empty"),
        (Flow::End(_), _) => {}
    }
    ran
}

/// Aggregate `id` from the store; a failure or a panic (an `apply` that panics on a recorded
/// event panics every load) as the answer to give.
async fn load<A: Aggregate>(
    runtime: &Inner<A>,
    id: &str,
) -> Result<Option<AggregateState<A>>, Response> {
    match AssertUnwindSafe(runtime.repo.load(id)).catch_unwind().await {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(error)) => Err(error.into_response()),
        Err(panic) => Err(Response::error(format!(
            "aggregate {}-{id} panicked while loading: {}",
            A::NAME,
            panic_text(panic.as_ref())
        ))),
    }
}

/// Saves a snapshot of `held`'s aggregate if one is due since version `before`, bounded by
/// `timeout`. It runs after the command's caller was answered and outside the commit timeout: a
/// snapshot only speeds loading up, so a slow snapshot store may delay the next command but
/// never fails this one.
pub(super) async fn snapshot_if_due<A: Aggregate>(
    runtime: &Inner<A>,
    held: &Held<A>,
    before: i64,
    timeout: Duration,
) {
    let Some(state) = &held.state else {
        return;
    };
    let id = held.id.as_str();
    let snapshot = tokio::time::timeout(timeout, runtime.repo.snapshot_if_due(id, before, state));
    if snapshot.await.is_err() {
        tracing::warn!(
            aggregate = A::NAME,
            id,
            timeout_after_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            "snapshot not saved in time"
        );
    }
}

struct LiveAggregate<'a, A: Aggregate> {
    runtime: &'a Inner<A>,
    id: &'a str,
    stream: &'a str,
    /// The aggregate, or `None` when it does not exist.
    state: Option<AggregateState<A>>,
    schedule: &'a mut Schedule,
}

impl<A: Aggregate> LiveAggregate<'_, A> {
    /// Runs a command and answers it; a panic while deciding, appending or folding is
    /// answered too, with the caller's own message (the handling only borrows it), and unloads
    /// the aggregate.
    async fn handle(
        &mut self,
        mut message: Message,
        kind: Kind,
        command: &dyn Command<A>,
        options: &CommandOptions,
    ) -> Ran {
        let span = tracing::debug_span!(
            "switchyard.aggregate.command",
            aggregate = A::NAME,
            id = self.id,
            message.id = message.id(),
            message.correlation_id = message.correlation_id(),
            service = message.service(),
        );
        let handled = AssertUnwindSafe(
            self.handle_in_span(&mut message, command, kind, options)
                .instrument(span),
        )
        .catch_unwind()
        .await;
        match handled {
            Ok(handled) => Ran {
                message: answer_appended(
                    message,
                    handled.response,
                    handled.version,
                    handled.position,
                ),
                flow: handled.flow,
                snapshot: handled.snapshot,
            },
            // `decide` panics are caught where they happen; this is the aggregate's `apply`,
            // `commit` or `rollback`, an unload rule, or the store.
            Err(panic) => {
                let reason = panic_text(panic.as_ref());
                tracing::error!(
                    aggregate = A::NAME,
                    id = self.id,
                    reason,
                    "aggregate panicked while handling a command; it will be reloaded"
                );
                let response = Response::error(format!(
                    "aggregate {}-{} panicked while handling `{}`: {reason}; it will be \
                     reloaded from the store on the next command",
                    A::NAME,
                    self.id,
                    message.service()
                ));
                Ran {
                    message: answer(message, response, None),
                    flow: Flow::End("failed"),
                    snapshot: None,
                }
            }
        }
    }

    async fn handle_in_span(
        &mut self,
        message: &mut Message,
        command: &dyn Command<A>,
        kind: Kind,
        options: &CommandOptions,
    ) -> Handled {
        let &CommandOptions {
            commit_timeout,
            ref metadata,
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
                        panic_text(panic.as_ref())
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
                match Box::pin(self.catch_up()).await {
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
            let committed = {
                let recording = std::pin::pin!(self.runtime.repo.record(
                    self.id,
                    self.stream,
                    &mut working,
                    &events.events,
                    message,
                    (**metadata).clone(),
                ));
                within(commit_timeout, recording)
                    .instrument(commit_span.clone())
                    .await
            };
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
                        self.schedule.after_event =
                            Some(self.schedule.after_event.map_or(due, |d| d.min(due)));
                    }
                    let flow = match unload {
                        Unload::Now => Flow::End("unload_rule"),
                        Unload::After(delay) => {
                            self.schedule.by_state = Some(Instant::now() + delay);
                            Flow::Continue
                        }
                        Unload::Never => {
                            self.schedule.by_state = None;
                            Flow::Continue
                        }
                    };
                    return Handled {
                        response,
                        version: Some(new_version),
                        position: appended.position,
                        flow,
                        snapshot: Some(version),
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
                        .boxed()
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
                        match Box::pin(self.runtime.repo.load(self.id)).await {
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
        Box::pin(self.runtime.repo.first_answer(self.id, message.id())).await
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
        assert_eq!(
            within(Duration::ZERO, std::pin::pin!(async { 7 }))
                .await
                .ok(),
            Some(7)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_past_the_limit_times_out() {
        let waits = tokio::time::sleep(Duration::from_secs(2));
        assert!(
            within(Duration::from_secs(1), std::pin::pin!(waits))
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_less_than_the_limit_finishes() {
        let waits = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            7
        };
        assert_eq!(
            within(Duration::from_secs(1), std::pin::pin!(waits))
                .await
                .ok(),
            Some(7)
        );
    }
}
