//! TLS on node-to-node connections (feature `tls`): encryption and server authentication by
//! certificate, under the cluster-secret handshake, which still runs inside the TLS session.

use std::sync::Arc;

use rustls::pki_types::ServerName;

use crate::error::ClusterError;

/// The TLS settings of a node: it serves with `server` and dials with `client`, expecting every
/// peer's certificate to be valid for `server_name`.
///
/// The simplest deployment gives every node the same certificate for one cluster-wide name
/// (e.g. `cluster.internal`), or certificates for that name signed by a cluster CA that
/// `client` trusts.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl TlsConfig {
    /// TLS settings from rustls configurations, and the name every peer's certificate must
    /// carry.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] when `server_name` is not a valid DNS name or IP address.
    pub fn new(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Self, ClusterError> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|error| {
            ClusterError::Config(format!("TLS server name `{server_name}`: {error}"))
        })?;
        Ok(Self {
            server,
            client,
            server_name,
        })
    }
}
