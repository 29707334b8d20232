//! The messaging layer on one node: a router with a public and a private service, an
//! authorization rule, a service that calls another, validation, and the typed answers a caller
//! gets when something is wrong.
//!
//! Run it from the repository root:
//!
//! ```text
//! cargo run --example greeter
//! RUST_LOG=debug cargo run --example greeter   # also prints every dispatch step
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use switchyard::messaging::{Authorization, Listing, PayloadError, Response};
use switchyard::{Ctx, Message, Node, Router};

#[derive(Serialize, Deserialize)]
struct Greet {
    name: String,
}

/// Public: greets by name, after asking the private `polish` service to tidy the name up.
async fn greet(msg: Message, ctx: Ctx) -> Result<Message, PayloadError> {
    let Greet { name } = msg.request()?;
    let polished = ctx
        .dispatch(Message::caused_by(&msg, "polish").with_request(&name))
        .await;
    // The polished name, or the name as it came if `polish` failed.
    let name = polished.answer::<String>().unwrap_or(name);
    Ok(msg.ok_with(&format!("Hello, {name}!")))
}

/// Private: only this node can call it.
async fn polish(msg: Message) -> Result<Message, PayloadError> {
    let name: String = msg.request()?;
    let mut chars = name.trim().chars();
    let polished = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::from("stranger"),
    };
    Ok(msg.ok_with(&polished))
}

fn greeter() -> Router {
    Router::new("greeter")
        .service("greet", greet)
        .doc("Greets a person by name")
        .private("polish", polish)
        .doc("Tidies up a name")
        .authorize(|msg: &Message| match msg.log_fields().get("user") {
            Some("mallory") => Err(Response::forbidden("mallory is not welcome")),
            _ => Ok(()),
        })
}

fn text(reply: &Message) -> String {
    // A failure's error reads as the response that came back ("forbidden: ...").
    reply
        .answer::<String>()
        .unwrap_or_else(|error| error.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let node = Node::new("greeter-node");
    node.register(greeter())?;
    for service in node.services(Listing::All) {
        println!(
            "registered {:<7} {:<6} {}",
            service.visibility.to_string(),
            service.name,
            service.description.unwrap_or_default()
        );
    }

    let reply = node
        .dispatch(Message::new("greet").with_request(&Greet {
            name: "  ada".into(),
        }))
        .await;
    println!("greet ada      -> {}", text(&reply));

    let check = node
        .validate(Message::new("greet").with_request(&Greet {
            name: "grace".into(),
        }))
        .await;
    println!(
        "validate grace -> {} (dry run: {:?})",
        text(&check),
        check.dry_run()
    );

    let refused = node
        .dispatch(
            Message::new("greet")
                .with_request(&Greet {
                    name: "mallory".into(),
                })
                .with_log_field("user", "mallory"),
        )
        .await;
    println!("greet mallory  -> {}", text(&refused));

    let asked = node
        .authorized(&Message::new("greet").with_log_field("user", "mallory"))
        .await;
    println!(
        "authorized?    -> {}",
        matches!(asked, Authorization::Allowed)
    );

    let unknown = node.dispatch(Message::new("farewell")).await;
    println!("farewell       -> {}", text(&unknown));

    let malformed = node
        .dispatch(Message::new("greet").with_request(&42_u8))
        .await;
    println!("greet 42       -> {}", text(&malformed));
    Ok(())
}
