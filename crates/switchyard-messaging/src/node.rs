//! A node: the services registered here, and the dispatcher that calls services anywhere.

mod dispatch;
mod execution;
mod registry;
mod wall_clock;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use self::dispatch::Purpose;
use self::registry::Registry;
use crate::remote::{Hop, RemoteNodes};
use crate::router::{Listing, RouterPolicy, RouterService, ServiceInfo, Visibility};
use crate::{AlreadyAttached, Message, NodeId, RegisterError, Response, Router};

/// The timeout of [`Node::dispatch`] unless the node or the call says otherwise.
///
/// Five seconds, as in x3m: long enough for a command that loads an aggregate from a database,
/// short enough that a caller notices a lost node.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A member of a Switchyard system: it holds a registry of services and dispatches messages to
/// services, here or (with a cluster attached) on other nodes.
///
/// A `Node` is a cheap handle; clones share one node. Dispatch reads the registry without taking
/// a lock, and a local call runs its handler on the caller's own task, under the call's
/// deadline with its panics caught: a handler that panics answers [`Response::Error`] and the
/// node keeps serving, one still running at the deadline, or whose caller drops the dispatch, is
/// dropped where it waits. A handler must not block its thread: the deadline fires only when it
/// yields. A call from another node runs its handler on the task awaiting
/// [`Node::serve_remote`]; calls nested more than 16 deep run theirs in a task of its own.
///
/// # Examples
///
/// ```
/// use switchyard_messaging::{Message, Node, Response, Router};
///
/// async fn greet(msg: Message) -> Result<Message, switchyard_messaging::PayloadError> {
///     let name: String = msg.request()?;
///     Ok(msg.ok_with(&format!("Hello, {name}!")))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::new("example");
/// node.register(Router::new("greeter").service("greet", greet).authorize(|_| Ok(())))?;
///
/// let reply = node.dispatch(Message::new("greet").with_request("Ada")).await;
/// let greeting: String = reply.answer()?;
/// assert_eq!(greeting, "Hello, Ada!");
///
/// let unknown = node.dispatch(Message::new("nope")).await;
/// assert_eq!(unknown.response(), Some(&Response::ServiceUnavailable("nope".into())));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    default_timeout: Duration,
    registry: ArcSwap<Registry>,
    /// Serialises registrations so two concurrent ones cannot both miss a clash.
    registering: Mutex<()>,
    remote: OnceLock<Arc<dyn RemoteNodes>>,
}

/// Settings for a [`Node`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NodeBuilder {
    name: String,
    incarnation: Option<u64>,
    default_timeout: Duration,
}

impl NodeBuilder {
    /// The timeout of calls that do not set their own (default [`DEFAULT_TIMEOUT`]).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The incarnation of the node id (default: the start time in milliseconds since the Unix
    /// epoch, so a restarted node is a new member).
    pub fn incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = Some(incarnation);
        self
    }

    /// Builds the node.
    pub fn build(self) -> Node {
        let incarnation = self.incarnation.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64)
        });
        Node {
            inner: Arc::new(Inner {
                id: NodeId::new(self.name, incarnation),
                default_timeout: self.default_timeout,
                registry: ArcSwap::from_pointee(Registry::default()),
                registering: Mutex::new(()),
                remote: OnceLock::new(),
            }),
        }
    }
}

/// Options of one dispatch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct DispatchOptions {
    /// How long to wait for the reply; the node's default timeout when `None`.
    pub timeout: Option<Duration>,
}

impl DispatchOptions {
    /// Options with this timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
        }
    }
}

/// The answer of [`Node::authorized`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// The providing router would let the call through.
    Allowed,
    /// The providing router refuses the call with this response.
    Denied(Response),
    /// No node offers the service.
    ServiceUnavailable,
}

/// What a node did with a call that came from another node (see [`Node::serve_remote`]).
#[derive(Debug)]
pub enum Served {
    /// The reply to send back to the caller.
    Reply(Message),
    /// The handler chose not to reply; the caller times out.
    NoReply,
    /// `choose_node` picked another node: forward the message there, with the caller's reply
    /// address, and let that node reply.
    Forward {
        /// The node to forward to.
        node: NodeId,
        /// The message, unchanged.
        message: Message,
    },
}

impl Node {
    /// A node named `name` with default settings.
    pub fn new(name: impl Into<String>) -> Self {
        Self::builder(name).build()
    }

    /// Settings for a node named `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            incarnation: None,
            default_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The timeout of calls that do not set one.
    pub fn default_timeout(&self) -> Duration {
        self.inner.default_timeout
    }

    /// Registers a router's services on this node. Several routers may be registered; their
    /// public services are all announced to the cluster.
    ///
    /// # Errors
    ///
    /// [`RegisterError::DuplicateService`] when a service name is already registered here (or
    /// appears twice in the router); [`RegisterError::ServiceNameTooLong`] when a name is
    /// longer than [`MAX_SERVICE_NAME_LEN`](crate::MAX_SERVICE_NAME_LEN) bytes. Then none of
    /// the router's services is registered.
    pub fn register<S>(&self, router: Router<S>) -> Result<(), RegisterError>
    where
        S: Clone + Send + Sync + 'static,
    {
        let (policy, services) = router.into_parts();
        self.register_parts(policy, services)
    }

    fn register_parts(
        &self,
        policy: RouterPolicy,
        services: Vec<RouterService>,
    ) -> Result<(), RegisterError> {
        let _registering = self
            .inner
            .registering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let router_name = policy.name.clone();
        if let Some(long) = services
            .iter()
            .find(|s| s.info.name.len() > crate::MAX_SERVICE_NAME_LEN)
        {
            return Err(RegisterError::ServiceNameTooLong {
                service: long.info.name.chars().take(64).collect(),
                router: router_name.to_string(),
                len: long.info.name.len(),
                max: crate::MAX_SERVICE_NAME_LEN,
            });
        }
        let names = |visibility| {
            services
                .iter()
                .filter(|s| s.info.visibility == visibility)
                .map(|s| s.info.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (public, private) = (names(Visibility::Public), names(Visibility::Private));
        let next = self.inner.registry.load().with_router(policy, services)?;
        self.inner.registry.store(Arc::new(next));
        tracing::debug!(
            name: "register_local_services",
            node = %self.id(),
            router = %router_name,
            public = %public,
            private = %private,
        );
        if let Some(remote) = self.inner.remote.get() {
            remote.announce(self.public_services());
        }
        Ok(())
    }

    /// Joins this node to a cluster: from now on the dispatcher also calls the services of the
    /// peers `remote` knows, and this node's public services are announced through it.
    ///
    /// # Errors
    ///
    /// [`AlreadyAttached`] when the node already has a remote link.
    pub fn attach_remote(&self, remote: Arc<dyn RemoteNodes>) -> Result<(), AlreadyAttached> {
        self.inner
            .remote
            .set(remote.clone())
            .map_err(|_| AlreadyAttached {
                node: self.id().to_string(),
            })?;
        remote.announce(self.public_services());
        Ok(())
    }

    /// Dispatches `message` with the node's default timeout and returns it answered.
    ///
    /// The answer is in [`Message::response`]: the service's own, or
    /// [`Response::ServiceUnavailable`] (no node offers it), [`Response::ServiceTimeout`] (no reply
    /// in time; a local handler still running is cancelled), [`Response::Error`] (the handler
    /// failed or panicked), [`Response::Forbidden`] (refused by the router) or
    /// [`Response::NoNodesAvailable`] (every provider declined). A message that is already
    /// halted is returned untouched. The reply carries no request, and no events unless the call
    /// was a verbose dry run.
    pub async fn dispatch(&self, message: Message) -> Message {
        self.run_dispatch(message, self.inner.default_timeout, Purpose::Dispatch)
            .await
    }

    /// As [`dispatch`](Node::dispatch), with per-call options.
    pub async fn dispatch_with(&self, message: Message, options: DispatchOptions) -> Message {
        let timeout = options.timeout.unwrap_or(self.inner.default_timeout);
        self.run_dispatch(message, timeout, Purpose::Dispatch).await
    }

    /// Dispatches `message` as a dry run: [`DryRun::No`](crate::DryRun::No) becomes
    /// [`DryRun::Yes`](crate::DryRun::Yes), a verbose dry run stays verbose. Services must not
    /// take effect on a dry run; aggregate services validate the command and persist nothing.
    pub async fn validate(&self, mut message: Message) -> Message {
        if message.dry_run() == crate::DryRun::No {
            message.set_dry_run(crate::DryRun::Yes);
        }
        self.run_dispatch(message, self.inner.default_timeout, Purpose::Validate)
            .await
    }

    /// Whether the router offering `message`'s service would let it through, asking the
    /// providing node (local first).
    pub async fn authorized(&self, message: &Message) -> Authorization {
        self.check_authorization(message).await
    }

    /// The services registered on this node, as [`Router::registered_services`] lists a
    /// router's: [`Listing::Public`] (announced to the cluster), [`Listing::Private`] (callable
    /// only here) or [`Listing::All`] (private, then public), each group sorted by name (see
    /// [`Listing`]). Every entry states its [`visibility`](ServiceInfo::visibility).
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard_messaging::{Listing, Message, Node, Router, Visibility};
    ///
    /// async fn hello(msg: Message) -> Message {
    ///     msg.ok()
    /// }
    ///
    /// let node = Node::new("intro");
    /// node.register(Router::new("greeter").service("hello", hello).private("audit", hello))?;
    ///
    /// let names = |listing| node.services(listing).into_iter().map(|s| s.name).collect::<Vec<_>>();
    /// assert_eq!(names(Listing::Public), ["hello"]);
    /// assert_eq!(names(Listing::Private), ["audit"]);
    /// assert_eq!(names(Listing::All), ["audit", "hello"]);
    /// assert_eq!(node.services(Listing::All)[0].visibility, Visibility::Private);
    /// # Ok::<(), switchyard_messaging::RegisterError>(())
    /// ```
    pub fn services(&self, listing: Listing) -> Vec<ServiceInfo> {
        self.sorted_services(listing, ServiceInfo::clone)
    }

    /// What `view` makes of each service in `listing`, private ones first, each part sorted by
    /// service name; read from one snapshot of the registry.
    fn sorted_services<T>(&self, listing: Listing, view: impl Fn(&ServiceInfo) -> T) -> Vec<T> {
        let registry = self.inner.registry.load();
        let mut services: Vec<_> = registry
            .services()
            .filter(|service| listing.includes(service.info.visibility))
            .map(|service| {
                let info = &service.info;
                let public = info.visibility == Visibility::Public;
                ((public, info.name.as_str()), view(info))
            })
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        services.into_iter().map(|(_, viewed)| viewed).collect()
    }

    /// The nodes offering `service`: this node first when it does, then the peers that publish it.
    pub fn providers(&self, service: &str) -> Vec<NodeId> {
        let mut providers = Vec::new();
        if self.inner.registry.load().get(service).is_some() {
            providers.push(self.id().clone());
        }
        if let Some(remote) = self.inner.remote.get() {
            providers.extend(remote.providers(service));
        }
        providers
    }

    /// The members of the cluster as this node sees them, itself first.
    pub fn members(&self) -> Vec<NodeId> {
        let mut members = vec![self.id().clone()];
        if let Some(remote) = self.inner.remote.get() {
            members.extend(remote.members());
        }
        members
    }

    /// Answers another node's question whether this node's router authorizes `message`, for
    /// cluster implementations: only a public service registered here counts (a private
    /// service, or one this node does not offer, is [`Authorization::ServiceUnavailable`]),
    /// and no other node is asked in turn.
    pub fn authorize_remote(&self, message: &Message) -> Authorization {
        match self.inner.registry.load().get(message.service()) {
            Some(service) if service.info.visibility == Visibility::Public => {
                match service.policy.authorize(message) {
                    Ok(()) => Authorization::Allowed,
                    Err(response) => Authorization::Denied(response),
                }
            }
            _ => Authorization::ServiceUnavailable,
        }
    }

    /// Runs a call that came from another node, for cluster implementations.
    ///
    /// Private services are not served ([`Response::ServiceUnavailable`]). On the first hop the
    /// router authorizes the call and its `choose_node` may answer [`Served::Forward`]; a
    /// forwarded call runs as it is. The handler is cancelled at `deadline`.
    ///
    /// The handler runs inside the returned future, with its panics caught and answered as
    /// [`Response::Error`], as a local call's: drive it where a handler that awaits for long
    /// holds up nothing that must go on (not on the task reading a connection's frames: a
    /// handler awaiting a call back over that connection would wait for its own reply).
    pub async fn serve_remote(&self, message: Message, hop: Hop, deadline: Instant) -> Served {
        self.serve_incoming(message, hop, deadline).await
    }

    fn public_services(&self) -> Vec<String> {
        self.sorted_services(Listing::Public, |info| info.name.clone())
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("default_timeout", &self.inner.default_timeout)
            .field("remote", &self.inner.remote.get().is_some())
            .finish_non_exhaustive()
    }
}
