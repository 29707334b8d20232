//! Node-to-node connections over TLS (feature `tls`).

use std::sync::Arc;
use std::time::Duration;

use switchyard_cluster::TlsConfig;
use switchyard_cluster::rustls;
use switchyard_messaging::{Message, Response, Router};

use crate::support::{answered_by, config, start_with, wait_for, whoami};

/// One certificate for the cluster-wide name, and the configurations trusting it.
fn tls_config() -> TlsConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["cluster.test".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConfig::new(Arc::new(server), Arc::new(client), "cluster.test").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_over_tls_and_a_node_without_it_cannot_connect() {
    let tls = tls_config();
    let a = start_with("a", config(&[]).tls(tls.clone()), |_| {}).await;
    let seed = vec![a.cluster.gossip_addr().to_string()];
    let _b = start_with("b", config(&seed).tls(tls), |node| {
        node.register(
            Router::new("b")
                .service("on_b", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    let plain = start_with("plain", config(&seed), |node| {
        node.register(
            Router::new("p")
                .service("on_plain", whoami)
                .authorize(|_| Ok(())),
        )
        .unwrap();
    })
    .await;
    wait_for(Duration::from_secs(3), "b connected over TLS", || async {
        a.cluster
            .members()
            .iter()
            .any(|m| m.id.name() == "b" && m.connected)
    })
    .await;
    assert_eq!(
        answered_by(&a.node.dispatch(Message::new("on_b")).await),
        "b"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        a.cluster
            .members()
            .iter()
            .all(|m| m.id.name() != "plain" || !m.connected),
        "a node without TLS connected"
    );
    let refused = a.node.dispatch(Message::new("on_plain")).await;
    assert!(
        matches!(refused.response(), Some(Response::ServiceUnavailable(_))),
        "{:?}",
        refused.response()
    );
    let from_plain = plain.node.dispatch(Message::new("on_b")).await;
    assert!(
        !from_plain.response().is_some_and(Response::is_success),
        "{:?}",
        from_plain.response()
    );
}
