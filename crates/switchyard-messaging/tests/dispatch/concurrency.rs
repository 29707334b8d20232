//! Many calls at once: each reply belongs to its own request.

use switchyard_messaging::{Ctx, Message, Node, Response, Router};

use crate::support::open;

async fn echo(msg: Message) -> Result<Message, switchyard_messaging::PayloadError> {
    let number: u64 = msg.request()?;
    if number.is_multiple_of(7) {
        tokio::task::yield_now().await;
    }
    Ok(msg.ok_with(&number))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_dispatches_each_get_their_own_reply() {
    let node = Node::new("busy");
    node.register(open("echo").service("echo", echo)).unwrap();
    let calls = (0..10_000_u64).map(|number| {
        let node = node.clone();
        tokio::spawn(async move {
            let msg = Message::new("echo").with_request(&number);
            let id = msg.id().to_owned();
            let reply = node.dispatch(msg).await;
            (number, id, reply)
        })
    });
    let results = futures::future::join_all(calls).await;
    for result in results {
        let (number, id, reply) = result.unwrap();
        assert_eq!(reply.id(), id);
        let answered: u64 = reply
            .answer()
            .unwrap_or_else(|error| panic!("call {number} got {error}"));
        assert_eq!(answered, number);
    }
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>(_: &T) {}

#[test]
fn public_handles_and_futures_are_send_and_sync() {
    assert_send_sync::<Node>();
    assert_send_sync::<Ctx>();
    assert_send_sync::<Router>();
    assert_send_sync::<Message>();
    assert_send_sync::<Response>();
    assert_send_sync::<switchyard_messaging::Payload>();
    assert_send_sync::<switchyard_messaging::RegisterError>();
    assert_send_sync::<switchyard_messaging::ReplyError>();
    assert_send_sync::<switchyard_messaging::MissingExtension>();
    assert_send_sync::<Router<std::sync::Arc<u8>>>();
    assert_send_sync::<switchyard_messaging::State<std::sync::Arc<u8>>>();

    let node = Node::new("send");
    assert_send(&node.dispatch(Message::new("x")));
    assert_send(&node.validate(Message::new("x")));
    let msg = Message::new("x");
    assert_send(&node.authorized(&msg));
    assert_send(&open("r").invoke(Message::new("x")));
}
