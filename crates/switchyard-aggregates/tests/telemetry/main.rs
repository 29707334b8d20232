//! The aggregate layer's telemetry events, in a binary of their own: a scoped subscriber
//! sees every event only when no other test races it for the callsites' interest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

#[path = "../runtime/faulty.rs"]
#[allow(dead_code)]
mod faulty;
#[path = "../runtime/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::collections::BTreeMap;
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

/// A span as recorded: its name, its parent's name, and its fields (as `Debug` text).
#[derive(Clone, Debug)]
struct SpanRecord {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanRecord>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Where a span's record is, kept in the span's extensions.
struct Index(usize);

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(SpanRecord {
            name: attrs.metadata().name(),
            parent: span.parent().map(|parent| parent.name()),
            fields,
        });
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let extensions = span.extensions();
        let Index(index) = extensions.get::<Index>().unwrap();
        values.record(&mut Fields(&mut self.0.lock().unwrap()[*index].fields));
    }
}

#[test]
fn commits_and_unloads_have_spans() {
    let spans = Spans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bank = bank();
        bank.node.dispatch(opening("sp-1")).await;
        assert!(bank.accounts.runtime().unload("sp-1").await);
    });
    let spans = spans.0.lock().unwrap();
    let find = |name: &str| {
        spans
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
            .clone()
    };
    let commit = find("switchyard.aggregate.commit");
    assert_eq!(commit.parent, Some("switchyard.aggregate.command"));
    assert_eq!(commit.fields["aggregate"], "account");
    assert_eq!(commit.fields["id"], "sp-1");
    assert_eq!(commit.fields["events"], "1");
    assert_eq!(commit.fields["version"], "0", "recorded once known");
    assert_eq!(
        find("switchyard.aggregate.append").parent,
        Some("switchyard.aggregate.commit"),
        "the append is part of the commit"
    );
    let unload = find("switchyard.aggregate.unload");
    assert_eq!(unload.fields["id"], "sp-1");
    assert_eq!(unload.fields["reason"], "requested");
}
