//! Errors of node set-up.

/// A router could not be registered on a node; nothing of it was registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Two services share a name on one node. Rename one, or register the routers on different
    /// nodes.
    #[error(
        "service `{service}` of router `{router}` is already registered on this node by router `{registered_by}`"
    )]
    DuplicateService {
        /// The service name.
        service: String,
        /// The router being registered.
        router: String,
        /// The router that registered the name first (the same router when it lists the name
        /// twice).
        registered_by: String,
    },
    /// A service name is longer than [`MAX_SERVICE_NAME_LEN`](crate::MAX_SERVICE_NAME_LEN)
    /// bytes: a cluster could not announce it. Shorten it.
    #[error(
        "service name of {len} bytes in router `{router}` is longer than the {max} allowed (MAX_SERVICE_NAME_LEN): shorten it"
    )]
    ServiceNameTooLong {
        /// The name's first 64 characters.
        service: String,
        /// The router being registered.
        router: String,
        /// The name's length in bytes.
        len: usize,
        /// The limit, [`MAX_SERVICE_NAME_LEN`](crate::MAX_SERVICE_NAME_LEN).
        max: usize,
    },
}

/// A remote link was attached to a node that already has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node} already has a remote link; a node joins one cluster")]
pub struct AlreadyAttached {
    pub(crate) node: String,
}

/// A handler asked its [`Ctx`](crate::Ctx) for an extension its router does not hold. Add the
/// value to the router with [`Router::extension`](crate::Router::extension).
///
/// Used with `?` in a handler, it answers [`Response::Error`](crate::Response::Error) with this
/// text: a missing extension is a mistake in the service's set-up, not the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "router `{router}` holds no extension of type `{type_name}`: add one with `Router::extension`"
)]
pub struct MissingExtension {
    pub(crate) router: String,
    pub(crate) type_name: &'static str,
}

impl crate::IntoResponse for MissingExtension {
    fn into_response(self) -> crate::Response {
        crate::Response::error(self.to_string())
    }
}
