//! x3m's dispatcher and router tests, ported.

use switchyard_messaging::{Authorization, DryRun, Listing, Message, Response};

use crate::support::{ok_with, x3m_node, x3m_router};

#[tokio::test]
async fn an_unknown_service_is_unavailable() {
    let reply = x3m_node().dispatch(Message::new("wrong_service")).await;
    assert_eq!(
        reply.response(),
        Some(&Response::ServiceUnavailable("wrong_service".into()))
    );
    assert!(reply.is_halted());
}

#[tokio::test]
async fn a_service_is_forbidden_by_default() {
    let reply = x3m_node()
        .dispatch(Message::new("unauthorized_service"))
        .await;
    assert_eq!(reply.response(), Some(&Response::Forbidden(None)));
}

#[tokio::test]
async fn a_custom_denial_carries_its_reason() {
    let reply = x3m_node()
        .dispatch(Message::new("custom_unauthorized_service"))
        .await;
    assert_eq!(
        reply.response(),
        Some(&Response::forbidden("None shall pass!"))
    );
}

#[tokio::test]
async fn a_public_service_answers() {
    let reply = x3m_node().dispatch(Message::new("first")).await;
    assert_eq!(reply.response(), Some(&ok_with("from_first")));
}

#[tokio::test]
async fn a_private_service_answers_on_its_own_node() {
    let reply = x3m_node().dispatch(Message::new("private_service")).await;
    assert_eq!(reply.response(), Some(&ok_with("from_private")));
}

#[tokio::test]
async fn authorized_asks_the_providing_router() {
    let node = x3m_node();
    let cases = [
        ("first", Authorization::Allowed),
        ("private_service", Authorization::Allowed),
        (
            "unauthorized_service",
            Authorization::Denied(Response::Forbidden(None)),
        ),
        (
            "custom_unauthorized_service",
            Authorization::Denied(Response::forbidden("None shall pass!")),
        ),
        ("wrong_service", Authorization::ServiceUnavailable),
    ];
    for (service, expected) in cases {
        assert_eq!(
            node.authorized(&Message::new(service)).await,
            expected,
            "{service}"
        );
    }
}

#[tokio::test]
async fn validate_turns_a_real_call_into_a_dry_run() {
    let reply = x3m_node().validate(Message::new("first")).await;
    assert_eq!(reply.dry_run(), DryRun::Yes);
    assert_eq!(reply.response(), Some(&ok_with("from_first")));
}

#[tokio::test]
async fn validate_keeps_a_verbose_dry_run_verbose() {
    let reply = x3m_node()
        .validate(Message::new("first").with_dry_run(DryRun::Verbose))
        .await;
    assert_eq!(reply.dry_run(), DryRun::Verbose);
    assert_eq!(reply.response(), Some(&ok_with("from_first")));
}

#[test]
fn registered_services_lists_by_visibility() {
    let router = x3m_router();
    let names = |listing| -> Vec<String> {
        router
            .registered_services(listing)
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(
        names(Listing::Public),
        [
            "first",
            "unauthorized_service",
            "custom_unauthorized_service"
        ]
    );
    assert_eq!(names(Listing::Private), ["private_service"]);
    assert_eq!(
        names(Listing::All),
        [
            "private_service",
            "first",
            "unauthorized_service",
            "custom_unauthorized_service"
        ]
    );
}

#[tokio::test]
async fn a_router_can_be_invoked_directly() {
    let reply = x3m_router().invoke(Message::new("first")).await;
    assert_eq!(reply.response(), Some(&ok_with("from_first")));
}
