//! The dispatcher across nodes, through an in-memory twin of a cluster: remote calls, private
//! services, fail-over, forwarding and remote authorization. The network's own failures are the
//! cluster crate's tests; these pin what the dispatcher does with each outcome.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use switchyard_messaging::remote::{Hop, RemoteError, RemoteNodes};
use switchyard_messaging::{
    Authorization, Ctx, DispatchOptions, Message, Node, NodeChoice, NodeId, Response, Served,
};
use tokio::time::Instant;

use crate::support::open;

/// Nodes of one process, linked directly. A cut node receives nothing.
#[derive(Default)]
struct Twin {
    nodes: Mutex<HashMap<NodeId, Node>>,
    announced: Mutex<HashMap<NodeId, Vec<String>>>,
    cut: Mutex<HashSet<NodeId>>,
}

struct Link {
    me: NodeId,
    twin: Arc<Twin>,
}

impl Twin {
    fn join(self: &Arc<Self>, node: &Node) {
        self.nodes
            .lock()
            .unwrap()
            .insert(node.id().clone(), node.clone());
        let link = Link {
            me: node.id().clone(),
            twin: self.clone(),
        };
        node.attach_remote(Arc::new(link)).unwrap();
    }

    fn cut(&self, node: &Node) {
        self.cut.lock().unwrap().insert(node.id().clone());
    }

    fn reachable(&self, node: &NodeId) -> Option<Node> {
        if self.cut.lock().unwrap().contains(node) {
            return None;
        }
        self.nodes.lock().unwrap().get(node).cloned()
    }
}

impl RemoteNodes for Link {
    fn providers(&self, service: &str) -> Vec<NodeId> {
        let mut providers: Vec<_> = self
            .twin
            .announced
            .lock()
            .unwrap()
            .iter()
            .filter(|(node, services)| **node != self.me && services.iter().any(|s| s == service))
            .map(|(node, _)| node.clone())
            .collect();
        providers.sort();
        providers
    }

    fn members(&self) -> Vec<NodeId> {
        let nodes = self.twin.nodes.lock().unwrap();
        let mut members: Vec<_> = nodes.keys().filter(|n| **n != self.me).cloned().collect();
        members.sort();
        members
    }

    fn invoke(
        &self,
        node: NodeId,
        message: Message,
        hop: Hop,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, RemoteError>> {
        let twin = self.twin.clone();
        async move {
            let Some(target) = twin.reachable(&node) else {
                return Err(RemoteError::NotDelivered {
                    reason: format!("{node} is unreachable"),
                });
            };
            match target.serve_remote(message, hop, deadline).await {
                Served::Reply(reply) => Ok(reply),
                Served::NoReply => {
                    tokio::time::sleep_until(deadline).await;
                    Err(RemoteError::TimedOut)
                }
                Served::Forward { node, message } => {
                    let owner = twin.reachable(&node).ok_or(RemoteError::Failed {
                        reason: format!("owner {node} is unreachable"),
                    })?;
                    match owner.serve_remote(message, Hop::Forwarded, deadline).await {
                        Served::Reply(reply) => Ok(reply),
                        _ => Err(RemoteError::TimedOut),
                    }
                }
            }
        }
        .boxed()
    }

    fn authorize(
        &self,
        node: NodeId,
        message: Message,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Result<(), Response>, RemoteError>> {
        let twin = self.twin.clone();
        async move {
            let target = twin.reachable(&node).ok_or(RemoteError::NotDelivered {
                reason: "unreachable".into(),
            })?;
            Ok(match target.authorized(&message).await {
                Authorization::Allowed => Ok(()),
                Authorization::Denied(response) => Err(response),
                Authorization::ServiceUnavailable => {
                    Err(Response::ServiceUnavailable(message.service().to_owned()))
                }
            })
        }
        .boxed()
    }

    fn announce(&self, public_services: Vec<String>) {
        self.twin
            .announced
            .lock()
            .unwrap()
            .insert(self.me.clone(), public_services);
    }
}

async fn whoami(msg: Message, ctx: Ctx) -> Message {
    let name = ctx.node_id().name().to_owned();
    msg.ok_with(&name)
}

async fn declines(msg: Message, ctx: Ctx) -> Message {
    let reason = format!("{} has no quorum", ctx.node_id().name());
    msg.return_with(Response::TryAnotherNode(reason))
}

fn answered_by(reply: &Message) -> String {
    reply
        .response()
        .and_then(Response::payload)
        .unwrap_or_else(|| panic!("no payload in {:?}", reply.response()))
        .decode()
        .unwrap()
}

fn cluster(names: &[&str]) -> (Arc<Twin>, Vec<Node>) {
    let twin = Arc::new(Twin::default());
    let nodes: Vec<Node> = names
        .iter()
        .map(|name| {
            let node = Node::builder(*name).incarnation(1).build();
            twin.join(&node);
            node
        })
        .collect();
    (twin, nodes)
}

#[tokio::test]
async fn a_service_on_another_node_answers() {
    let (_twin, nodes) = cluster(&["a", "b"]);
    nodes[1]
        .register(open("who").service("whoami", whoami))
        .unwrap();
    let reply = nodes[0].dispatch(Message::new("whoami")).await;
    assert_eq!(answered_by(&reply), "b");
    assert_eq!(reply.origin_node(), Some(nodes[0].id()));
    assert_eq!(nodes[0].providers("whoami"), vec![nodes[1].id().clone()]);
    assert_eq!(
        nodes[0].members(),
        vec![nodes[0].id().clone(), nodes[1].id().clone()]
    );
}

#[tokio::test]
async fn the_local_provider_wins() {
    let (_twin, nodes) = cluster(&["a", "b"]);
    for node in &nodes {
        node.register(open("who").service("whoami", whoami))
            .unwrap();
    }
    for _ in 0..20 {
        assert_eq!(
            answered_by(&nodes[0].dispatch(Message::new("whoami")).await),
            "a"
        );
    }
}

#[tokio::test]
async fn a_private_service_is_never_offered_or_served_remotely() {
    let (_twin, nodes) = cluster(&["a", "b"]);
    nodes[1]
        .register(open("who").private("secret", whoami))
        .unwrap();
    let reply = nodes[0].dispatch(Message::new("secret")).await;
    assert_eq!(
        reply.response(),
        Some(&Response::ServiceUnavailable("secret".into()))
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    match nodes[1]
        .serve_remote(Message::new("secret"), Hop::First, deadline)
        .await
    {
        Served::Reply(reply) => assert!(matches!(
            reply.response(),
            Some(Response::ServiceUnavailable(_))
        )),
        other => panic!("a private service was served remotely: {other:?}"),
    }
}

#[tokio::test]
async fn every_router_of_a_node_is_announced() {
    let (twin, nodes) = cluster(&["a"]);
    nodes[0]
        .register(open("one").service("s1", whoami))
        .unwrap();
    nodes[0]
        .register(open("two").service("s2", whoami))
        .unwrap();
    let announced = twin.announced.lock().unwrap()[nodes[0].id()].clone();
    assert_eq!(announced, ["s1", "s2"]);
}

#[tokio::test]
async fn a_declining_provider_hands_the_call_to_the_next() {
    let (_twin, nodes) = cluster(&["a", "b", "c"]);
    nodes[1]
        .register(open("busy").service("work", declines))
        .unwrap();
    nodes[2]
        .register(open("free").service("work", whoami))
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            answered_by(&nodes[0].dispatch(Message::new("work")).await),
            "c"
        );
    }
}

#[tokio::test]
async fn when_every_provider_declines_each_reason_is_listed() {
    let (_twin, nodes) = cluster(&["a", "b", "c"]);
    for node in &nodes {
        node.register(open("busy").service("work", declines))
            .unwrap();
    }
    let reply = nodes[0].dispatch(Message::new("work")).await;
    let Some(Response::NoNodesAvailable(declined)) = reply.response() else {
        panic!("expected no nodes available, got {:?}", reply.response());
    };
    assert_eq!(declined.len(), 3);
    assert_eq!(
        declined[0],
        (nodes[0].id().clone(), "a has no quorum".into())
    );
    let rest: HashSet<_> = declined[1..].iter().cloned().collect();
    let expected: HashSet<_> = [
        (nodes[1].id().clone(), "b has no quorum".to_owned()),
        (nodes[2].id().clone(), "c has no quorum".to_owned()),
    ]
    .into();
    assert_eq!(rest, expected);
}

#[tokio::test]
async fn an_unreachable_provider_is_skipped() {
    let (twin, nodes) = cluster(&["a", "b", "c"]);
    nodes[1]
        .register(open("who").service("whoami", whoami))
        .unwrap();
    nodes[2]
        .register(open("who").service("whoami", whoami))
        .unwrap();
    twin.cut(&nodes[1]);
    for _ in 0..10 {
        assert_eq!(
            answered_by(&nodes[0].dispatch(Message::new("whoami")).await),
            "c"
        );
    }
    twin.cut(&nodes[2]);
    let reply = nodes[0].dispatch(Message::new("whoami")).await;
    assert!(matches!(
        reply.response(),
        Some(Response::NoNodesAvailable(declined)) if declined.len() == 2
    ));
}

#[tokio::test(start_paused = true)]
async fn a_remote_timeout_is_not_retried_elsewhere() {
    async fn silent(_msg: Message) -> switchyard_messaging::Reply {
        switchyard_messaging::Reply::NoReply
    }
    let (_twin, nodes) = cluster(&["a", "b", "c"]);
    let calls = Arc::new(AtomicUsize::new(0));
    for node in &nodes[1..] {
        let calls = calls.clone();
        let counting = move |msg: Message| {
            calls.fetch_add(1, Ordering::SeqCst);
            silent(msg)
        };
        node.register(open("silent").service("silent", counting))
            .unwrap();
    }
    let reply = nodes[0]
        .dispatch_with(
            Message::new("silent"),
            DispatchOptions::with_timeout(Duration::from_millis(200)),
        )
        .await;
    assert!(matches!(
        reply.response(),
        Some(Response::ServiceTimeout { .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The one peer offering a service (and not this node) takes the dispatcher's short path:
/// each of its outcomes is answered as the fail-over over a list of providers answers it.
#[tokio::test(start_paused = true)]
async fn a_lone_remote_provider_is_answered_as_a_list_of_one() {
    async fn silent(_msg: Message) -> switchyard_messaging::Reply {
        switchyard_messaging::Reply::NoReply
    }
    let (twin, nodes) = cluster(&["a", "b"]);
    nodes[1]
        .register(
            open("lone")
                .service("whoami", whoami)
                .service("work", declines)
                .service("silent", silent),
        )
        .unwrap();
    assert_eq!(
        answered_by(&nodes[0].dispatch(Message::new("whoami")).await),
        "b"
    );
    let declined = nodes[0].dispatch(Message::new("work").with_id("m-1")).await;
    assert_eq!(declined.id(), "m-1");
    assert_eq!(
        declined.response(),
        Some(&Response::NoNodesAvailable(vec![(
            nodes[1].id().clone(),
            "b has no quorum".into()
        )]))
    );
    let silent = nodes[0]
        .dispatch_with(
            Message::new("silent"),
            DispatchOptions::with_timeout(Duration::from_millis(200)),
        )
        .await;
    assert!(
        matches!(silent.response(), Some(Response::ServiceTimeout { .. })),
        "{:?}",
        silent.response()
    );
    twin.cut(&nodes[1]);
    let unreachable = nodes[0].dispatch(Message::new("whoami")).await;
    assert_eq!(
        unreachable.response(),
        Some(&Response::NoNodesAvailable(vec![(
            nodes[1].id().clone(),
            "b#1 is unreachable".into()
        )]))
    );
}

#[tokio::test]
async fn choose_node_forwards_once_to_the_owner() {
    let (_twin, nodes) = cluster(&["a", "b", "c"]);
    let choices = Arc::new(AtomicUsize::new(0));
    // b sends every call to c and c sends every call to b: a second hop would bounce forever.
    for (node, other) in [(&nodes[1], &nodes[2]), (&nodes[2], &nodes[1])] {
        let other = other.id().clone();
        let choices = choices.clone();
        node.register(
            open("placed")
                .service("placed", whoami)
                .choose_node(move |_| {
                    choices.fetch_add(1, Ordering::SeqCst);
                    NodeChoice::Node(other.clone())
                }),
        )
        .unwrap();
    }
    for _ in 0..10 {
        let before = choices.load(Ordering::SeqCst);
        let reply = nodes[0].dispatch(Message::new("placed")).await;
        let owner = answered_by(&reply);
        assert!(owner == "b" || owner == "c", "{owner}");
        assert_eq!(choices.load(Ordering::SeqCst) - before, 1);
    }
}

#[tokio::test]
async fn a_local_call_is_forwarded_to_the_chosen_node() {
    let (_twin, nodes) = cluster(&["a", "b"]);
    let b = nodes[1].id().clone();
    for node in &nodes {
        let b = b.clone();
        node.register(
            open("placed")
                .service("placed", whoami)
                .choose_node(move |_| NodeChoice::Node(b.clone())),
        )
        .unwrap();
    }
    assert_eq!(
        answered_by(&nodes[0].dispatch(Message::new("placed")).await),
        "b"
    );
}

#[tokio::test]
async fn authorization_is_asked_of_the_remote_provider() {
    let (_twin, nodes) = cluster(&["a", "b"]);
    nodes[1]
        .register(
            switchyard_messaging::Router::new("guarded")
                .service("open", whoami)
                .service("closed", whoami)
                .authorize(|msg: &Message| match msg.service() {
                    "open" => Ok(()),
                    _ => Err(Response::forbidden("members only")),
                }),
        )
        .unwrap();
    assert_eq!(
        nodes[0].authorized(&Message::new("open")).await,
        Authorization::Allowed
    );
    assert_eq!(
        nodes[0].authorized(&Message::new("closed")).await,
        Authorization::Denied(Response::forbidden("members only"))
    );
    let reply = nodes[0].dispatch(Message::new("closed")).await;
    assert_eq!(reply.response(), Some(&Response::forbidden("members only")));
    assert_eq!(
        nodes[0].authorized(&Message::new("nowhere")).await,
        Authorization::ServiceUnavailable
    );
}

/// Another node asking whether a call is authorized here gets this node's public router's
/// answer only: private and absent services are unavailable, and nobody else is asked.
#[tokio::test]
async fn a_remote_authorization_question_sees_only_public_services_here() {
    let node = Node::new("here");
    node.register(
        switchyard_messaging::Router::new("r")
            .service("public_ok", whoami)
            .private("private_ok", whoami)
            .authorize(|msg: &Message| {
                if msg.log_fields().get("user").is_some() {
                    Ok(())
                } else {
                    Err(Response::Forbidden(None))
                }
            }),
    )
    .unwrap();
    let with_user = |service: &str| Message::new(service).with_log_field("user", "ada");
    assert!(matches!(
        node.authorize_remote(&with_user("public_ok")),
        Authorization::Allowed
    ));
    assert!(matches!(
        node.authorize_remote(&Message::new("public_ok")),
        Authorization::Denied(Response::Forbidden(None))
    ));
    assert!(matches!(
        node.authorize_remote(&with_user("private_ok")),
        Authorization::ServiceUnavailable
    ));
    assert!(matches!(
        node.authorize_remote(&with_user("elsewhere")),
        Authorization::ServiceUnavailable
    ));
}
