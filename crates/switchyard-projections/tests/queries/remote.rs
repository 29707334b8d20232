//! A query service called from another node: read your writes across the wire.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_aggregates::store::MemoryStore;
use switchyard_messaging::remote::{Hop, RemoteError, RemoteNodes};
use switchyard_messaging::{Listing, Message, Node, NodeId, ReplyError, Response, Served};
use switchyard_projections::{MemoryCheckpointStore, QueryMessage};
use tokio::time::Instant;

use crate::support::*;

/// Links a node to one peer, each call and reply going through the wire codec.
struct Peer(Node);

impl Peer {
    fn node(&self) -> &Node {
        &self.0
    }
}

fn across_the_wire(message: &Message) -> Message {
    Message::from_bytes(&message.to_bytes().unwrap()).unwrap()
}

impl RemoteNodes for Peer {
    fn providers(&self, service: &str) -> Vec<NodeId> {
        let peer = self.node();
        let offers = peer
            .services(Listing::Public)
            .iter()
            .any(|s| s.name == service);
        offers.then(|| peer.id().clone()).into_iter().collect()
    }

    fn members(&self) -> Vec<NodeId> {
        vec![self.node().id().clone()]
    }

    fn invoke(
        &self,
        _node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, RemoteError>> {
        let peer = self.node().clone();
        async move {
            match peer
                .serve_remote(across_the_wire(&message), hop, deadline)
                .await
            {
                Served::Reply(reply) => Ok(across_the_wire(&reply)),
                _ => Err(RemoteError::TimedOut),
            }
        }
        .boxed()
    }

    fn authorize(
        &self,
        _node: NodeId,
        _message: Message,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Result<(), Response>, RemoteError>> {
        async { Ok(Ok(())) }.boxed()
    }

    fn announce(&self, _public_services: Vec<String>) {}
}

/// Links `a` and `b` both ways.
fn link(a: &Node, b: &Node) {
    for (from, to) in [(a, b), (b, a)] {
        from.attach_remote(Arc::new(Peer(to.clone()))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_from_another_node_reads_at_the_position_of_the_callers_command() {
    // The writer takes commands; the reader holds the read model and serves its queries.
    let store = MemoryStore::new();
    let writer = Node::new("writer");
    writer.register(commands(store.clone())).unwrap();
    let reader = Node::new("reader");
    let (runner, balances) = start_balances(store.clone(), MemoryCheckpointStore::new());
    reader.register(queries(balances)).unwrap();
    link(&writer, &reader);

    let mut expected = 0;
    for amount in 1..=10 {
        let reply = writer.dispatch(deposit_of(1, amount)).await;
        reply.success().unwrap();
        expected += amount;
        let query = balance_of(1).with_read_after(&reply, PATIENCE);
        let seen = writer.dispatch(query).await.answer::<u64>().unwrap();
        assert_eq!(seen, expected, "after depositing {amount}");
    }

    // The typed timeout crosses the wire too.
    let unreachable = balance_of(1).with_read_at(u64::MAX, Duration::from_millis(10));
    let reply = writer.dispatch(unreachable).await;
    assert!(matches!(reply.answer::<u64>(), Err(ReplyError::Timeout(_))));
    runner.stop().await.unwrap();
}
