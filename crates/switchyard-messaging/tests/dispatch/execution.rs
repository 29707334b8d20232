//! Where a handler runs: a local call on the caller's own task (no task per call), a call from
//! another node on the task serving it, a deeply nested one in a task of its own; and what
//! running inline keeps of a task of its own: panics caught (in the handler's poll and in its
//! drop), the handler stopped with its caller.

use std::time::Duration;

use switchyard_messaging::remote::Hop;
use switchyard_messaging::{Ctx, DispatchOptions, Message, Node, PayloadError, Response, Served};
use tokio::time::Instant;

use crate::support::open;

tokio::task_local! {
    /// Set by a test around the future it awaits: visible to a handler only if that handler
    /// runs on the same task.
    static AWAITED_BY: &'static str;
}

/// Answers which task it runs on, as far as [`AWAITED_BY`] tells.
async fn which_task(msg: Message) -> Message {
    let task = AWAITED_BY
        .try_with(|name| *name)
        .unwrap_or("a task of its own");
    msg.ok_with(task)
}

fn node() -> Node {
    let node = Node::new("execution");
    node.register(open("where").service("which_task", which_task))
        .unwrap();
    node
}

#[tokio::test]
async fn a_local_handler_runs_on_the_callers_task() {
    let node = node();
    let reply = AWAITED_BY
        .scope("the caller", node.dispatch(Message::new("which_task")))
        .await;
    assert_eq!(reply.answer::<String>().unwrap(), "the caller");
}

/// A cluster drives `serve_remote` on a task serving one connection's calls: no task per call.
#[tokio::test]
async fn a_call_from_another_node_runs_its_handler_on_the_task_serving_it() {
    let node = node();
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = AWAITED_BY
        .scope(
            "the serving task",
            node.serve_remote(Message::new("which_task"), Hop::First, deadline),
        )
        .await;
    match served {
        Served::Reply(reply) => assert_eq!(reply.answer::<String>().unwrap(), "the serving task"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Counts down through nested calls of itself and answers how deep it went. Each level's
/// polls would sit on the one thread's stack if every level ran on its caller's task.
async fn countdown(msg: Message, ctx: Ctx) -> Result<Message, PayloadError> {
    let left: u32 = msg.request()?;
    if left == 0 {
        return Ok(msg.ok_with(&0_u32));
    }
    let inner = ctx
        .dispatch(Message::caused_by(&msg, "countdown").with_request(&(left - 1)))
        .await;
    let depth: u32 = inner.answer().map_err(|error| PayloadError::Missing {
        what: format!("the inner answer ({error})"),
    })?;
    Ok(msg.ok_with(&(depth + 1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_nested_hundreds_deep_do_not_overflow_the_stack() {
    let node = Node::new("nested");
    node.register(open("nested").service("countdown", countdown))
        .unwrap();
    let reply = node
        .dispatch(Message::new("countdown").with_request(&400_u32))
        .await;
    assert_eq!(reply.answer::<u32>().unwrap(), 400);
}

/// Drop code that panics: a handler's future holding it panics when dropped.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the handler's drop broke");
        }
    }
}

async fn stuck_with_a_bad_drop(msg: Message) -> Message {
    let _guard = PanicsWhenDropped;
    std::future::pending::<()>().await;
    msg.ok()
}

/// The handler's future is dropped on the caller's task (at the deadline, or with the caller's
/// own future); a panic there stays inside the dispatcher, as it did inside a task of its own.
#[tokio::test(start_paused = true)]
async fn a_handler_whose_drop_panics_neither_unwinds_into_its_caller_nor_loses_the_answer() {
    let node = Node::new("bad-drop");
    node.register(
        open("bad")
            .service("stuck", stuck_with_a_bad_drop)
            .service("which_task", which_task),
    )
    .unwrap();
    let reply = node
        .dispatch_with(
            Message::new("stuck"),
            DispatchOptions::with_timeout(Duration::from_millis(50)),
        )
        .await;
    assert!(
        matches!(reply.response(), Some(Response::ServiceTimeout { .. })),
        "{:?}",
        reply.response()
    );

    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        node.dispatch(Message::new("stuck")),
    )
    .await;
    assert!(gave_up.is_err(), "the caller gave up first");

    let reply = node.dispatch(Message::new("which_task")).await;
    assert!(reply.success().is_ok(), "the node keeps serving");
}

/// A handler on the caller's task spends the task's cooperative budget: a caller dispatching
/// in a loop to a handler that answers at once still lets the other tasks of its thread run.
#[tokio::test(flavor = "current_thread")]
async fn a_caller_dispatching_in_a_loop_still_yields_to_other_tasks() {
    let node = node();
    let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = tokio::spawn({
        let other_ran = other_ran.clone();
        async move {
            for _ in 0..1_000 {
                node.dispatch(Message::new("which_task")).await;
            }
            other_ran.load(std::sync::atomic::Ordering::SeqCst)
        }
    });
    tokio::spawn(async move {
        other_ran.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(caller.await.unwrap(), "the caller never yielded");
}
