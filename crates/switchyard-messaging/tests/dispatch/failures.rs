//! Timeouts, panics, silent handlers, handler errors, registration clashes and the other ways a
//! call goes wrong: each gives a typed answer and the node keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_messaging::{
    Ctx, DispatchOptions, DryRun, Listing, Message, Node, NodeChoice, PayloadError, RegisterError,
    Reply, Response, Visibility,
};

use crate::support::{first, ok_with, open};

async fn fine(msg: Message) -> Message {
    msg.ok()
}

async fn slow(msg: Message) -> Message {
    tokio::time::sleep(Duration::from_secs(60)).await;
    msg.ok()
}

async fn silent(_msg: Message) -> Reply {
    Reply::NoReply
}

async fn panics(msg: Message) -> Message {
    if msg.service() == "panics" {
        panic!("the handler broke");
    }
    msg.ok()
}

async fn fails(msg: Message) -> Result<Message, PayloadError> {
    let _number: u64 = msg.request()?;
    Ok(msg.ok())
}

fn node_with(router: switchyard_messaging::Router) -> Node {
    let node = Node::new("failures");
    node.register(router).unwrap();
    node
}

#[tokio::test(start_paused = true)]
async fn a_slow_service_times_out_with_the_call_details() {
    let node = node_with(open("slow").service("slow", slow));
    let msg = Message::new("slow").with_id("m-slow");
    let reply = node
        .dispatch_with(
            msg,
            DispatchOptions::with_timeout(Duration::from_millis(50)),
        )
        .await;
    assert_eq!(
        reply.response(),
        Some(&Response::ServiceTimeout {
            service: "slow".into(),
            message_id: "m-slow".into(),
            timeout: Duration::from_millis(50),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_finishes_times_out_on_real_time() {
    // The deadline's timer is armed only once the handler has had a turn; this pins that it is
    // armed at all on a multi-thread runtime, with real time.
    async fn forever(_msg: Message) -> Message {
        std::future::pending().await
    }
    let node = node_with(open("forever").service("forever", forever));
    let started = std::time::Instant::now();
    let reply = node
        .dispatch_with(
            Message::new("forever"),
            DispatchOptions::with_timeout(Duration::from_millis(100)),
        )
        .await;
    assert!(matches!(
        reply.response(),
        Some(Response::ServiceTimeout { .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_is_five_seconds() {
    let node = node_with(open("slow").service("slow", slow));
    let started = tokio::time::Instant::now();
    let reply = node.dispatch(Message::new("slow")).await;
    assert!(matches!(
        reply.response(),
        Some(Response::ServiceTimeout { timeout, .. }) if *timeout == Duration::from_secs(5)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn no_reply_times_out_at_the_deadline() {
    let node = node_with(open("silent").service("silent", silent));
    let started = tokio::time::Instant::now();
    let reply = node
        .dispatch_with(
            Message::new("silent"),
            DispatchOptions::with_timeout(Duration::from_millis(300)),
        )
        .await;
    assert!(matches!(
        reply.response(),
        Some(Response::ServiceTimeout { .. })
    ));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn a_panicking_handler_answers_an_error_and_the_node_keeps_serving() {
    let node = node_with(
        open("panics")
            .service("panics", panics)
            .service("fine", panics),
    );
    let reply = node.dispatch(Message::new("panics")).await;
    match reply.response() {
        Some(Response::Error(payload)) => {
            let text = payload.to_string();
            assert!(
                text.contains("panicked") && text.contains("the handler broke"),
                "{text}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let reply = node.dispatch(Message::new("fine")).await;
    assert_eq!(reply.response(), Some(&Response::Ok));
}

/// A router's rules are user code too: a panic in `authorize` or `choose_node` answers the call
/// with an error naming the rule, instead of unwinding into the caller.
#[tokio::test]
async fn a_panicking_router_rule_answers_an_error_and_the_node_keeps_serving() {
    let node = node_with(
        switchyard_messaging::Router::new("rules")
            .authorize(|msg: &Message| {
                if msg.service() == "unauthorizable" {
                    panic!("the rule broke");
                }
                Ok(())
            })
            .choose_node(|msg: &Message| {
                if msg.service() == "unplaceable" {
                    panic!("the placement broke");
                }
                NodeChoice::Local
            })
            .service("unauthorizable", fine)
            .service("unplaceable", fine)
            .service("fine", fine),
    );
    for (service, rule, detail) in [
        ("unauthorizable", "authorize", "the rule broke"),
        ("unplaceable", "choose_node", "the placement broke"),
    ] {
        let reply = node.dispatch(Message::new(service)).await;
        match reply.response() {
            Some(Response::Error(payload)) => {
                let text = payload.to_string();
                assert!(
                    text.contains("panicked") && text.contains(rule) && text.contains(detail),
                    "{text}"
                );
            }
            other => panic!("expected an error from {service}, got {other:?}"),
        }
    }
    let reply = node.dispatch(Message::new("fine")).await;
    assert_eq!(reply.response(), Some(&Response::Ok));
}

#[tokio::test]
async fn a_panicking_authorize_rule_is_a_denial_when_asked_about_not_an_unwinding() {
    let router = switchyard_messaging::Router::new("rules")
        .authorize(|_: &Message| panic!("the rule broke"))
        .service("guarded", fine);
    let msg = Message::new("guarded");
    assert!(!router.is_authorized(&msg));
    let node = node_with(router);
    match node.authorized(&msg).await {
        switchyard_messaging::Authorization::Denied(Response::Error(payload)) => {
            let text = payload.to_string();
            assert!(
                text.contains("`authorize` panicked") && text.contains("the rule broke"),
                "{text}"
            );
        }
        other => panic!("expected a denial naming the rule, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_request_raised_with_question_mark_is_a_validation_error() {
    let node = node_with(open("fails").service("fails", fails));
    let reply = node
        .dispatch(Message::new("fails").with_request("not a number"))
        .await;
    match reply.response() {
        Some(Response::ValidationError(payload)) => {
            assert!(payload.to_string().contains("u64"), "{payload}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_is_dropped_and_its_work_cancelled() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let late = move |msg: Message| {
        let flag = flag.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
            msg.ok_with("late")
        }
    };
    let node = node_with(open("late").service("late", late).service("quick", first));

    let timed_out = node
        .dispatch_with(
            Message::new("late").with_id("same-id"),
            DispatchOptions::with_timeout(Duration::from_millis(10)),
        )
        .await;
    assert!(matches!(
        timed_out.response(),
        Some(Response::ServiceTimeout { .. })
    ));

    // A later call with the same id gets its own answer, never the stale one.
    let next = node
        .dispatch(Message::new("quick").with_id("same-id"))
        .await;
    assert_eq!(next.response(), Some(&ok_with("from_first")));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the timed-out handler kept running"
    );
}

#[tokio::test]
async fn a_halted_message_is_returned_untouched() {
    let node = node_with(open("first").service("first", first));
    let halted = Message::new("first").validated::<u32, _>(Err("bad input"));
    let expected = halted.clone();
    assert_eq!(node.dispatch(halted).await, expected);
}

#[test]
fn a_duplicate_service_name_is_refused_whole() {
    let node = Node::new("dup");
    node.register(open("a").service("shared", first)).unwrap();
    let error = node
        .register(open("b").service("own", first).service("shared", first))
        .unwrap_err();
    assert_eq!(
        error,
        RegisterError::DuplicateService {
            service: "shared".into(),
            router: "b".into(),
            registered_by: "a".into(),
        }
    );
    let names: Vec<_> = node
        .services(Listing::All)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        ["shared"],
        "nothing of the refused router was registered"
    );
    assert!(error.to_string().contains("`shared`"));
}

/// A name longer than `MAX_SERVICE_NAME_LEN` bytes is refused at `register`, with the whole
/// router; one of exactly that length is taken.
#[test]
fn a_service_name_too_long_to_announce_is_refused() {
    let node = Node::new("long");
    let longest = "n".repeat(switchyard_messaging::MAX_SERVICE_NAME_LEN);
    let error = node
        .register(
            open("a")
                .service("short", first)
                .service(format!("{longest}x"), first),
        )
        .unwrap_err();
    assert!(matches!(
        error,
        RegisterError::ServiceNameTooLong {
            len: 1025,
            max: 1024,
            ..
        }
    ));
    assert!(error.to_string().contains("shorten it"), "{error}");
    assert!(node.services(Listing::All).is_empty(), "nothing registered");
    node.register(open("b").service(longest, first)).unwrap();
}

#[test]
fn a_router_listing_a_name_twice_is_refused() {
    let node = Node::new("dup");
    let error = node
        .register(open("a").service("x", first).private("x", first))
        .unwrap_err();
    assert!(matches!(error, RegisterError::DuplicateService { .. }));
}

#[tokio::test]
async fn a_handler_calls_another_service_in_the_same_conversation() {
    async fn inner(msg: Message) -> Message {
        let ids = (
            msg.correlation_id().to_owned(),
            msg.causation_id().to_owned(),
        );
        msg.ok_with(&ids)
    }
    async fn outer(msg: Message, ctx: Ctx) -> Result<Message, PayloadError> {
        let reply = ctx.dispatch(Message::caused_by(&msg, "inner")).await;
        let ids: (String, String) = reply
            .response()
            .and_then(Response::payload)
            .ok_or_else(|| PayloadError::Missing {
                what: "inner's answer".into(),
            })?
            .decode()?;
        Ok(msg.ok_with(&ids))
    }
    let node = node_with(
        open("chain")
            .service("outer", outer)
            .private("inner", inner),
    );
    let msg = Message::new("outer")
        .with_id("outer-1")
        .with_correlation_id("conversation");
    let reply = node.dispatch(msg).await;
    let (correlation, causation): (String, String) = reply
        .response()
        .and_then(Response::payload)
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(correlation, "conversation");
    assert_eq!(causation, "outer-1");
}

#[tokio::test]
async fn a_reply_carries_no_request_and_events_only_when_verbose() {
    async fn with_event(msg: Message) -> Message {
        msg.add_event("something happened").ok()
    }
    let node = node_with(open("events").service("events", with_event));
    let reply = node
        .dispatch(Message::new("events").with_request(&1_u8))
        .await;
    assert!(reply.payload().is_none());
    assert!(reply.events().is_empty());

    let verbose = node
        .validate(Message::new("events").with_dry_run(DryRun::Verbose))
        .await;
    assert_eq!(verbose.events().len(), 1);
}

#[tokio::test]
async fn the_reply_keeps_the_ids_and_stamps_the_origin_node() {
    let node = node_with(open("first").service("first", first));
    let reply = node
        .dispatch(
            Message::new("first")
                .with_id("m-7")
                .with_log_field("tenant", "acme"),
        )
        .await;
    assert_eq!(reply.id(), "m-7");
    assert_eq!(reply.origin_node(), Some(node.id()));
    assert_eq!(reply.log_fields().get("tenant"), Some("acme"));
}

#[tokio::test]
async fn a_node_lists_its_services_and_providers() {
    let node = Node::new("intro");
    node.register(
        open("a")
            .service("b_public", first)
            .doc("Answers from first")
            .private("a_private", first),
    )
    .unwrap();
    let listed = |listing| {
        node.services(listing)
            .into_iter()
            .map(|s| (s.name, s.visibility))
            .collect::<Vec<_>>()
    };
    let public = ("b_public".to_owned(), Visibility::Public);
    let private = ("a_private".to_owned(), Visibility::Private);
    assert_eq!(listed(Listing::Public), std::slice::from_ref(&public));
    assert_eq!(listed(Listing::Private), std::slice::from_ref(&private));
    assert_eq!(listed(Listing::All), [private, public]);
    assert_eq!(
        node.services(Listing::Public)[0].description.as_deref(),
        Some("Answers from first")
    );
    assert_eq!(node.providers("b_public"), vec![node.id().clone()]);
    assert!(node.providers("missing").is_empty());
    assert_eq!(node.members(), vec![node.id().clone()]);
}

#[tokio::test]
async fn an_unencodable_request_halts_before_dispatch() {
    struct Unsized;
    impl serde::Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            s.serialize_seq(None)?.end()
        }
    }
    let node = node_with(open("first").service("first", first));
    let reply = node
        .dispatch(Message::new("first").with_request(&Unsized))
        .await;
    assert!(matches!(reply.response(), Some(Response::Error(_))));
}

/// A caller that drops its dispatch (its own timeout, a cancelled remote call) stops the
/// handler: work nobody waits for does not run on unseen.
#[tokio::test(start_paused = true)]
async fn dropping_a_dispatch_stops_its_handler() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let node = node_with(open("long").service("long", move |msg: Message| {
        let flag = flag.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            flag.store(true, Ordering::SeqCst);
            msg.ok()
        }
    }));
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        node.dispatch_with(
            Message::new("long"),
            DispatchOptions::with_timeout(Duration::from_secs(10)),
        ),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the abandoned handler ran to its end"
    );
}
