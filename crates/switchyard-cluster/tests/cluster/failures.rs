//! What the cluster does when nodes die, calls time out, and bad bytes arrive.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use switchyard_cluster::ClusterEvent;
use switchyard_messaging::{Ctx, DispatchOptions, Message, Response, Router};

use crate::support::{
    answered_by, cluster_of, config, standard_routers, start_with, wait_event, wait_for,
};

/// A node started on a runtime of its own, on its own thread: shutting the runtime down kills
/// it as a crash would, with no goodbye: its tasks stop and its sockets close.
struct Doomed {
    runtime: Option<tokio::runtime::Runtime>,
    id: switchyard_messaging::NodeId,
}

impl Doomed {
    fn start(name: &str, seed: String, routers: impl FnOnce(&switchyard_messaging::Node)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let started = runtime.block_on(start_with(name, config(&[seed]), routers));
        let id = started.node.id().clone();
        // The handles live in a task of the node's runtime, so that killing the runtime drops
        // everything the node holds and its sockets close, as when a process dies.
        runtime.spawn(async move {
            let _started = started;
            std::future::pending::<()>().await;
        });
        Self {
            runtime: Some(runtime),
            id,
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_found_within_five_seconds_and_calls_go_elsewhere() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = a.cluster.gossip_addr().to_string();
    let _b = start_with("b", config(std::slice::from_ref(&seed)), standard_routers).await;
    let mut c = tokio::task::spawn_blocking(move || Doomed::start("c", seed, standard_routers))
        .await
        .unwrap();
    wait_for(Duration::from_secs(3), "b and c connected", || async {
        let m = a.cluster.members();
        m.len() == 2 && m.iter().all(|m| m.connected)
    })
    .await;
    let mut events = a.cluster.events();
    let c_id = c.id.clone();
    tokio::task::spawn_blocking(move || {
        c.kill();
        c
    })
    .await
    .unwrap();
    wait_event(
        &mut events,
        Duration::from_secs(5),
        &ClusterEvent::NodeLeft(c_id),
    )
    .await;
    for _ in 0..20 {
        let reply = a
            .node
            .dispatch_with(
                Message::new("whoami"),
                DispatchOptions::with_timeout(Duration::from_secs(2)),
            )
            .await;
        assert_eq!(answered_by(&reply), "b");
    }
}

/// The caller gives up long before the call's own deadline (it drops its dispatch): the node
/// running the call is told, and aborts the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_caller_gave_up_on_is_cancelled_where_it_runs() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel::<()>();
    let b = start_with("b", config(&seed), move |node| {
        node.register(
            Router::new("slow")
                .service("stuck", move |msg: Message| {
                    let finished = finished_tx.clone();
                    async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let _ = finished.send(());
                        msg.ok()
                    }
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        a.node.dispatch_with(
            Message::new("stuck"),
            DispatchOptions::with_timeout(Duration::from_secs(30)),
        ),
    )
    .await;
    assert!(gave_up.is_err());
    wait_for(
        Duration::from_secs(1),
        "the call stopped running on b",
        || async { b.cluster.stats().calls_served == 1 && b_running(&b) == 0 },
    )
    .await;
    let completed = tokio::time::timeout(Duration::from_secs(3), finished.recv()).await;
    assert!(completed.is_err(), "the cancelled handler ran to its end");
}

/// The provider dies while its handler holds the call: the caller learns at once that the
/// call's outcome is unknown, instead of waiting for its long deadline, and it is not run
/// again elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_dying_mid_call_ends_the_call_at_once_with_an_unknown_outcome() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = a.cluster.gossip_addr().to_string();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut b = tokio::task::spawn_blocking(move || {
        Doomed::start("b", seed, move |node| {
            node.register(
                Router::new("held")
                    .service("held", move |_: Message| {
                        let started = started_tx.clone();
                        async move {
                            let _ = started.send(());
                            // Held open until the node dies.
                            std::future::pending::<Message>().await
                        }
                    })
                    .authorize(|_| Ok(())),
            )
            .unwrap();
        })
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(3), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let call = tokio::spawn({
        let node = a.node.clone();
        async move {
            let reply = node
                .dispatch_with(
                    Message::new("held"),
                    DispatchOptions::with_timeout(Duration::from_secs(30)),
                )
                .await;
            (reply, tokio::time::Instant::now())
        }
    });
    tokio::time::timeout(Duration::from_secs(5), started.recv())
        .await
        .expect("the handler on b never started");
    let killed_at = tokio::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        b.kill();
        b
    })
    .await
    .unwrap();
    let (reply, answered_at) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call still waits 5 s after its provider died")
        .unwrap();
    assert!(answered_at.duration_since(killed_at) < Duration::from_secs(5));
    match reply.response() {
        Some(Response::Error(error)) => {
            let text = error.as_text().unwrap_or_default();
            assert!(
                text.contains("unknown") && text.contains("b#"),
                "the error names the node and the unknown outcome: {text}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn b_running(b: &crate::support::TestNode) -> usize {
    b.cluster.running_calls()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_only_their_connection() {
    let nodes = cluster_of(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.node
        .register(
            Router::new("only-a")
                .service("only_a", crate::support::whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    wait_for(Duration::from_secs(2), "only_a announced", || async {
        b.cluster.members()[0]
            .services
            .contains(&"only_a".to_owned())
    })
    .await;
    let rpc = a.cluster.rpc_addr();
    tokio::task::spawn_blocking(move || {
        // Garbage in a well-formed length prefix.
        let mut garbage = TcpStream::connect(rpc).unwrap();
        garbage
            .write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00])
            .unwrap();
        // A length far above the maximum frame size.
        let mut huge = TcpStream::connect(rpc).unwrap();
        huge.write_all(&u32::MAX.to_be_bytes()).unwrap();
        huge.write_all(&[1; 64]).unwrap();
        for stream in [&mut garbage, &mut huge] {
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let mut buffer = [0_u8; 1_024];
            // The node answers with its hello, then closes: read until end of stream.
            loop {
                match std::io::Read::read(stream, &mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => panic!("the node did not close the connection: {error}"),
                }
            }
        }
    })
    .await
    .unwrap();
    // The node goes on serving its members.
    for _ in 0..5 {
        assert_eq!(
            answered_by(&b.node.dispatch(Message::new("only_a")).await),
            "a"
        );
    }
    assert!(a.cluster.members()[0].connected);
}

/// The router's `authorize` panics for one call on the node serving it: that call gets an
/// error at once, and the connection it came on goes on serving (the next call on the same
/// pair of nodes is answered, not left to time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_router_answers_its_call_with_an_error_and_the_connection_goes_on() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("fragile")
                .service("touchy", |msg: Message| async move { msg.ok() })
                .authorize(|msg: &Message| {
                    if matches!(msg.request::<u64>(), Ok(13)) {
                        // Unwinds as `panic!` does, without the panic hook: with
                        // RUST_BACKTRACE set, the hook symbolizes a backtrace of this debug
                        // binary for 1-4 s on a loaded machine, holding the worker thread that
                        // also held the runtime's I/O driver (tokio hands it on only when that
                        // worker parks), so both nodes' gossip and timers stood still: the
                        // call outlived its deadline, or the nodes declared each other dead.
                        std::panic::resume_unwind(Box::new("unlucky number"));
                    }
                    Ok(())
                }),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let call = |n: u64| {
        a.node.dispatch_with(
            Message::new("touchy").with_request(&n),
            DispatchOptions::with_timeout(Duration::from_secs(3)),
        )
    };
    // An error naming the panic, not a timeout: the call was answered, not left to its deadline.
    let reply = call(13).await;
    match reply.response() {
        Some(Response::Error(reason)) => {
            let reason = reason.to_string();
            assert!(reason.contains("panicked"), "{reason}");
        }
        other => panic!("expected an error naming the panic, got {other:?}"),
    }
    for n in 0..3 {
        let reply = call(n).await;
        assert!(
            matches!(reply.response(), Some(Response::Ok)),
            "call {n} after the panic: {:?}",
            reply.response()
        );
    }
    assert_eq!(
        a.cluster.stats().connections_lost,
        0,
        "one connection served all"
    );
}

/// A node leaves while a call it made is still running elsewhere: no reply can reach it any
/// more, so the call ends as its connections close, with an error saying its outcome is
/// unknown, instead of waiting for its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_by_a_leaving_node_ends_when_it_closes_its_connections() {
    let a = start_with("a", config(&[]), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("slow")
                .service("stuck", |msg: Message| async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    msg.ok()
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(2), "b connected", || async {
        a.cluster.members().first().is_some_and(|m| m.connected)
    })
    .await;
    let call = tokio::spawn({
        let node = a.node.clone();
        async move {
            node.dispatch_with(
                Message::new("stuck"),
                DispatchOptions::with_timeout(Duration::from_secs(30)),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished());
    a.cluster.shutdown().await;
    let reply = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the call waits for its deadline after its node left")
        .unwrap();
    match reply.response() {
        Some(Response::Error(reason)) => {
            let reason = reason.to_string();
            assert!(reason.contains("unknown"), "{reason}");
        }
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

/// A handler serving a remote call calls back the node that called it, over the same
/// connection, and awaits that reply: the connection goes on reading while the handler runs,
/// so the reply comes in and the call answers (a reader waiting for each call it serves to
/// end before reading on would wait out both deadlines). The handler awaits, as handlers must:
/// one blocking its thread holds up whatever that thread would run, the runtime's I/O driver
/// included (see `Node`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_awaiting_a_call_back_over_its_own_connection_is_answered() {
    let a = start_with("a", config(&[]), |node| {
        node.register(
            Router::new("echo")
                .service("echo", |msg: Message| async move { msg.ok() })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let b = start_with("b", config(&seed), |node| {
        node.register(
            Router::new("busy")
                .service("call_back", |msg: Message, ctx: Ctx| async move {
                    let echo = ctx.dispatch(Message::new("echo")).await;
                    let answered = matches!(echo.response(), Some(Response::Ok));
                    msg.ok_with(&answered)
                })
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(
        Duration::from_secs(2),
        "both connected and announced",
        || async {
            a.cluster
                .members()
                .first()
                .is_some_and(|m| m.connected && m.services.contains(&"call_back".to_owned()))
                && b.cluster
                    .members()
                    .first()
                    .is_some_and(|m| m.connected && m.services.contains(&"echo".to_owned()))
        },
    )
    .await;
    let reply = a.node.dispatch(Message::new("call_back")).await;
    assert!(reply.answer::<bool>().unwrap(), "{:?}", reply.response());
    assert_eq!(a.cluster.stats().connections_lost, 0);
    assert_eq!(b.cluster.stats().connections_lost, 0);
}
