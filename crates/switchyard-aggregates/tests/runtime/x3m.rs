//! x3m's aggregate tests, ported, and the TestSupport helpers.

use switchyard_aggregates::test_support::{
    apply_events, command_message, given, state_from_events,
};
use switchyard_aggregates::{AggregateState, Command};
use switchyard_messaging::{Message, Response};

use crate::fixture::{Account, AccountEvent, withdraw};

#[test]
fn the_initial_state_has_version_minus_one() {
    let state = AggregateState::<Account>::default();
    assert_eq!(state.version, -1);
    assert_eq!(state.state, Account::default());
    assert!(state.processed.is_empty());
}

#[test]
fn a_rejecting_command_leaves_message_and_state_unchanged() {
    let state = state_from_events::<Account>([AccountEvent::Deposited(5)]);
    let before = state.clone();
    let msg = command_message("withdraw", &10_u64);
    let sent = msg.clone();
    let decided = withdraw.decide(&state.state, &msg);
    assert_eq!(decided.unwrap_err(), Response::error("insufficient funds"));
    assert_eq!(msg, sent);
    assert_eq!(state, before);
}

#[test]
fn state_from_events_counts_versions_from_zero() {
    let state = state_from_events::<Account>([
        AccountEvent::Opened { owner: "a".into() },
        AccountEvent::Deposited(3),
    ]);
    assert_eq!(state.version, 1);
    assert_eq!(state.state.balance, 3);
    let next = apply_events(state.clone(), [AccountEvent::Deposited(2)], None);
    assert_eq!((next.version, next.state.balance), (2, 5));
    let pinned = apply_events(state, [AccountEvent::Deposited(2)], Some(10));
    assert_eq!(pinned.version, 10);
}

#[test]
fn command_message_carries_the_request_and_assigns() {
    let msg = command_message("open_account", &"a1").assign("invoked_by", &"admin");
    assert_eq!(msg.service(), "open_account");
    assert_eq!(msg.request::<String>().unwrap(), "a1");
    assert_eq!(
        msg.assigned::<String>("invoked_by").unwrap().as_deref(),
        Some("admin")
    );
}

#[test]
fn given_when_then() {
    given::<Account>([AccountEvent::Deposited(10)])
        .when(withdraw, command_message("withdraw", &4_u64))
        .then_events(&[AccountEvent::Withdrawn(4)])
        .then_state(|account| assert_eq!(account.balance, 6));
    given::<Account>([])
        .when(withdraw, Message::new("withdraw"))
        .then_rejected_with(|response| assert!(matches!(response, Response::ValidationError(_))));
}
