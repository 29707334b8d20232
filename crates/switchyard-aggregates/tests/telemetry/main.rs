//! The aggregate layer's telemetry events, in a binary of their own: a scoped subscriber
//! sees every event only when no other test races it for the callsites' interest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

#[path = "../runtime/faulty.rs"]
#[allow(dead_code)]
mod faulty;
#[path = "../runtime/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_aggregates::AggregateRuntime;
use switchyard_aggregates::repo::Repo;
use switchyard_messaging::Response;
use tracing_subscriber::layer::SubscriberExt;

use crate::faulty::Faulty;
use crate::fixture::*;

#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Names {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0
            .lock()
            .unwrap()
            .push(event.metadata().name().to_owned());
    }
}

#[test]
fn a_slow_commit_times_out_and_is_reported() {
    let names = Names::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(names.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let faulty = Faulty::default();
        let runtime = AggregateRuntime::new(Repo::event_sourced(Arc::new(faulty.clone())));
        let accounts = switchyard_aggregates::MessageHandler::new(runtime)
            .commit_timeout(Duration::from_millis(50));
        let node = switchyard_messaging::Node::new("slow");
        node.register(router(&accounts)).unwrap();
        node.dispatch(opening("t-1")).await;
        *faulty.delay.lock().unwrap() = Some(Duration::from_secs(1));
        let reply = node.dispatch(command("deposit", "t-1", 1)).await;
        match reply.response() {
            Some(Response::Error(reason)) => {
                assert!(reason.to_string().contains("did not finish"), "{reason}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
        tokio::task::yield_now().await;
        assert!(!accounts.runtime().is_live("t-1"));
    });
    let names = names.0.lock().unwrap();
    assert!(
        names.iter().any(|n| n == "aggregate_commit_timeout"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "new_aggr_spawned"), "{names:?}");
    assert!(names.iter().any(|n| n == "handle_msg"), "{names:?}");
}
