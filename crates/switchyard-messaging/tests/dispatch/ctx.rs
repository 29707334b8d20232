//! What a handler reaches while it runs: other services through its `Ctx`, and its router's
//! state and extensions.

use std::sync::Arc;

use switchyard_messaging::{
    Ctx, Message, MissingExtension, Node, ReplyError, Response, Router, State,
};

async fn dry_run_mode(msg: Message) -> Message {
    let mode = format!("{:?}", msg.dry_run());
    msg.ok_with(&mode)
}

async fn check(msg: Message, ctx: Ctx) -> Result<Message, ReplyError> {
    let reply = ctx.validate(Message::caused_by(&msg, "mode")).await;
    let mode: String = reply.answer()?;
    Ok(msg.ok_with(&mode))
}

#[tokio::test]
async fn a_handler_validates_through_its_ctx_as_a_dry_run() {
    let node = Node::new("ctx");
    node.register(
        Router::new("ctx")
            .service("mode", dry_run_mode)
            .service("check", check)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let reply = node.dispatch(Message::new("check")).await;
    assert_eq!(reply.answer::<String>().unwrap(), "Yes");
}

/// A read model some projection keeps up to date, read by query services.
#[derive(Default)]
struct Prices {
    by_item: std::sync::RwLock<std::collections::HashMap<String, u64>>,
}

impl Prices {
    fn set(&self, item: &str, price: u64) {
        self.by_item
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(item.to_owned(), price);
    }

    fn get(&self, item: &str) -> Option<u64> {
        self.by_item
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(item)
            .copied()
    }
}

async fn price(
    msg: Message,
    State(prices): State<Arc<Prices>>,
) -> Result<Message, switchyard_messaging::PayloadError> {
    let item: String = msg.request()?;
    Ok(msg.ok_with(&prices.get(&item)))
}

/// The router's label (an extension) and its state, through `Ctx` and `State` together.
async fn describe(
    msg: Message,
    ctx: Ctx,
    State(shop): State<&'static str>,
) -> Result<Message, MissingExtension> {
    let Label(label) = ctx.extension::<Label>()?;
    Ok(msg.ok_with(&format!("{shop}: {label}")))
}

struct Label(&'static str);

fn shop(name: &'static str) -> Router<&'static str> {
    Router::new(name)
        .with_state(name)
        .private(format!("{name}.describe"), describe)
        .authorize(|_| Ok(()))
}

#[tokio::test]
async fn a_handler_reads_the_shared_read_model_its_router_holds() {
    let prices = Arc::new(Prices::default());
    let node = Node::new("state");
    node.register(
        Router::new("prices")
            .with_state(prices.clone())
            .service("price", price)
            .authorize(|_| Ok(())),
    )
    .unwrap();
    let ask = || node.dispatch(Message::new("price").with_request("tea"));
    assert_eq!(ask().await.answer::<Option<u64>>().unwrap(), None);
    prices.set("tea", 3);
    assert_eq!(ask().await.answer::<Option<u64>>().unwrap(), Some(3));
}

#[tokio::test]
async fn each_router_has_its_own_state_and_extensions() {
    let node = Node::new("state");
    node.register(shop("north").extension(Label("open late")))
        .unwrap();
    node.register(shop("south").extension(Label("closed on mondays")))
        .unwrap();
    let describe = |service: &str| node.dispatch(Message::new(service.to_owned()));
    assert_eq!(
        describe("north.describe").await.answer::<String>().unwrap(),
        "north: open late"
    );
    assert_eq!(
        describe("south.describe").await.answer::<String>().unwrap(),
        "south: closed on mondays"
    );
}

#[tokio::test]
async fn a_missing_extension_answers_an_error_naming_the_router_and_the_type() {
    let node = Node::new("state");
    node.register(shop("west")).unwrap();
    let reply = node.dispatch(Message::new("west.describe")).await;
    match reply.response() {
        Some(Response::Error(text)) => {
            let text = text.to_string();
            assert!(
                text.starts_with("router `west` holds no extension of type `")
                    && text.contains("Label")
                    && text.ends_with("add one with `Router::extension`"),
                "{text}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
