//! Given/when/then tests of aggregates as plain functions: no runtime, no store.
//!
//! Every event of a scenario, given or produced, goes through the codec the stores use (bincode
//! behind its version byte), so an event that would not survive storage fails the test; and two
//! different variants of a scenario's events recorded under one
//! [`event_type`](Aggregate::event_type) fail it too (see [`assert_distinct_event_types`]).
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! use switchyard_aggregates::test_support::{command_message, given};
//! use switchyard_aggregates::{Aggregate, CommandResult, Events};
//! use switchyard_messaging::{Message, Response};
//!
//! #[derive(Default, Debug, PartialEq)]
//! struct Account { balance: u64 }
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! enum AccountEvent { Deposited(u64), Withdrawn(u64) }
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     const NAME: &'static str = "account";
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited(n) => self.balance += n,
//!             AccountEvent::Withdrawn(n) => self.balance -= n,
//!         }
//!     }
//! }
//!
//! fn withdraw(account: &Account, msg: &Message) -> CommandResult<AccountEvent> {
//!     let amount: u64 = msg.request()?;
//!     if amount > account.balance {
//!         return Err(Response::error("insufficient funds"));
//!     }
//!     Ok(Events::one(AccountEvent::Withdrawn(amount)))
//! }
//!
//! given::<Account>([AccountEvent::Deposited(10)])
//!     .when(withdraw, command_message("withdraw", &4_u64))
//!     .then_events(&[AccountEvent::Withdrawn(4)])
//!     .then_state(|account| assert_eq!(account.balance, 6));
//!
//! given::<Account>([AccountEvent::Deposited(10)])
//!     .when(withdraw, command_message("withdraw", &40_u64))
//!     .then_rejected(&Response::error("insufficient funds"));
//! ```

// Assertions report a failed expectation by panicking, as `assert_eq!` does.
#![allow(clippy::panic)]

use std::fmt::Debug;

use serde::Serialize;
use switchyard_messaging::{Message, Response, codec};

use crate::{Aggregate, AggregateState, Command, CommandResult};

/// A message for `service` carrying `request` (x3m's `command_message/3`; add assigns with
/// [`Message::assign`]).
pub fn command_message<T: Serialize + ?Sized>(service: &str, request: &T) -> Message {
    Message::new(service).with_request(request)
}

fn round_trip<A: Aggregate>(event: &A::Event) -> A::Event {
    let bytes = codec::encode(event);
    let decoded = bytes
        .as_deref()
        .map_err(|e| e.to_string())
        .and_then(|bytes| codec::decode::<A::Event>(bytes).map_err(|e| e.to_string()));
    match decoded {
        Ok(event) => event,
        Err(error) => panic!(
            "event of `{}` does not survive the store's codec: {error}",
            A::NAME
        ),
    }
}

/// The state after `events` were applied to the initial state: version = number of events - 1
/// (x3m's `state_from_events/3`).
#[track_caller]
pub fn state_from_events<A: Aggregate>(
    events: impl IntoIterator<Item = A::Event>,
) -> AggregateState<A> {
    apply_events(AggregateState::default(), events, None)
}

/// Folds `events` onto `state`; the version becomes `version`, or by default the state's
/// version plus the number of events (x3m's `apply_events/4`).
#[track_caller]
pub fn apply_events<A: Aggregate>(
    mut state: AggregateState<A>,
    events: impl IntoIterator<Item = A::Event>,
    version: Option<i64>,
) -> AggregateState<A> {
    let events: Vec<A::Event> = events.into_iter().map(|e| round_trip::<A>(&e)).collect();
    state.apply_events(&events, version);
    state
}

/// Asserts that different variants among `events` get different
/// [`event_type`](Aggregate::event_type)s, so readers of the store can tell them apart.
///
/// The default `event_type` names each variant of an externally or adjacently tagged enum
/// after itself; an `event_type` of your own may not. Scenarios ([`given`], [`Scenario::when`])
/// check their events with this; call it with one event of each variant to check them all.
///
/// # Panics
///
/// When two variants share a name, naming it and the remedy.
#[track_caller]
pub fn assert_distinct_event_types<A: Aggregate>(events: &[A::Event]) {
    EventNames::default().record_all::<A>(events);
}

/// The event type each variant seen so far was recorded under.
struct EventNames<E>(Vec<(&'static str, std::mem::Discriminant<E>)>);

impl<E> Default for EventNames<E> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<E> EventNames<E> {
    /// Records each of `events`, as [`record`](Self::record).
    #[track_caller]
    fn record_all<A: Aggregate<Event = E>>(&mut self, events: &[E]) {
        for event in events {
            self.record::<A>(event);
        }
    }

    #[track_caller]
    fn record<A: Aggregate<Event = E>>(&mut self, event: &E) {
        let name = A::event_type(event);
        let variant = std::mem::discriminant(event);
        match self.0.iter().find(|(seen, _)| *seen == name) {
            Some((_, seen)) if *seen != variant => panic!(
                "two different variants of `{}`'s events are both recorded under the event type \
                 `{name}`, so readers of the store cannot tell them apart: have \
                 `Aggregate::event_type` to name each variant (its default names enum variants \
                 after themselves, and a struct event after its type)",
                A::NAME
            ),
            Some(_) => {}
            None => self.0.push((name, variant)),
        }
    }
}

/// Starts a scenario from the state `events` build.
///
/// # Panics
///
/// When an event does not survive the store's codec, or two different variants among `events`
/// share an event type (see [`assert_distinct_event_types`]).
#[track_caller]
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Scenario<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    let mut names = EventNames::default();
    names.record_all::<A>(&events);
    Scenario {
        state: state_from_events(events),
        names,
    }
}

/// A scenario's given state.
pub struct Scenario<A: Aggregate> {
    state: AggregateState<A>,
    names: EventNames<A::Event>,
}

impl<A: Aggregate> Scenario<A> {
    /// Runs `command` on the given state.
    ///
    /// # Panics
    ///
    /// When a recorded event does not survive the store's codec, or shares its event type
    /// with a different variant among the given and recorded events.
    #[track_caller]
    pub fn when(mut self, command: impl Command<A>, message: Message) -> Then<A> {
        let result = command.decide(&self.state.state, &message);
        let result = result.map(|mut events| {
            events.events = events.events.iter().map(round_trip::<A>).collect();
            events
        });
        if let Ok(events) = &result {
            self.names.record_all::<A>(events.events());
        }
        Then {
            state: self.state,
            result,
        }
    }
}

/// What a command decided, to check.
pub struct Then<A: Aggregate> {
    state: AggregateState<A>,
    result: CommandResult<A::Event>,
}

impl<A: Aggregate> Then<A> {
    /// Asserts the command recorded exactly `expected`, in order.
    #[track_caller]
    pub fn then_events(self, expected: &[A::Event]) -> Self
    where
        A::Event: PartialEq + Debug,
    {
        match &self.result {
            Ok(events) => assert_eq!(events.events(), expected, "recorded events"),
            Err(response) => {
                panic!("expected events {expected:?}, the command rejected: {response}")
            }
        }
        self
    }

    /// Asserts the command was rejected with `expected`.
    #[track_caller]
    pub fn then_rejected(self, expected: &Response) -> Self {
        match &self.result {
            Ok(events) => panic!(
                "expected the rejection `{expected}`, the command recorded {} events",
                events.events().len()
            ),
            Err(response) => assert_eq!(response, expected, "rejection"),
        }
        self
    }

    /// Checks the rejection with a function of your own.
    #[track_caller]
    pub fn then_rejected_with(self, check: impl FnOnce(&Response)) -> Self {
        match &self.result {
            Ok(events) => panic!(
                "expected a rejection, the command recorded {} events",
                events.events().len()
            ),
            Err(response) => check(response),
        }
        self
    }

    /// Checks the state after the recorded events were applied (the given state when the
    /// command was rejected).
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        let mut state = AggregateState::<A>::default();
        state.version = self.state.version;
        let mut replay = self.state;
        if let Ok(events) = &self.result {
            replay.apply_events(events.events(), None);
        }
        check(&replay.state);
        state.state = replay.state;
        Self {
            state,
            result: self.result,
        }
    }

    /// The decision, for checks of your own.
    pub fn result(&self) -> &CommandResult<A::Event> {
        &self.result
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Events;

    #[derive(Default)]
    struct Account;

    #[derive(Clone, Serialize, Deserialize)]
    enum AccountEvent {
        Opened,
        Closed,
    }

    impl Aggregate for Account {
        type Event = AccountEvent;
        const NAME: &'static str = "account";
        fn apply(&mut self, _: &AccountEvent) {}
        // A name of its own that forgets to tell the variants apart.
        fn event_type(_: &AccountEvent) -> &'static str {
            "AccountEvent"
        }
    }

    fn panic_text(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let Err(panic) = std::panic::catch_unwind(run) else {
            return String::new();
        };
        panic.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    fn close(_: &Account, _: &Message) -> CommandResult<AccountEvent> {
        Ok(Events::one(AccountEvent::Closed))
    }

    #[test]
    fn variants_sharing_an_event_type_fail_the_scenario() {
        let texts = [
            panic_text(|| {
                assert_distinct_event_types::<Account>(&[
                    AccountEvent::Opened,
                    AccountEvent::Closed,
                ])
            }),
            panic_text(|| {
                given::<Account>([AccountEvent::Opened]).when(close, Message::new("close"));
            }),
        ];
        for text in texts {
            assert!(text.contains("`AccountEvent`"), "{text}");
            assert!(
                text.contains("`Aggregate::event_type` to name each variant"),
                "{text}"
            );
        }
        // One variant, however often, is fine.
        assert_distinct_event_types::<Account>(&[AccountEvent::Opened, AccountEvent::Opened]);
    }
}
