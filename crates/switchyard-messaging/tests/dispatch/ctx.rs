//! What a handler reaches while it runs: other services through its `Ctx`.

use switchyard_messaging::{Ctx, Message, Node, ReplyError, Router};

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
