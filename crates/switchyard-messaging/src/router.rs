//! Named services and the rules for calling them.

use std::fmt;
use std::sync::Arc;

use crate::handler::{Erased, ErasedHandler};
use crate::state::Extensions;
use crate::{Handler, Message, Node, NodeId, Response, panic_text};

/// A named set of services with one authorization rule and one placement rule.
///
/// Each service is an `async fn` handler (see [`Handler`]). Public services
/// ([`service`](Router::service)) are announced to the cluster; private ones
/// ([`private`](Router::private)) can be dispatched only on the node that registered them.
///
/// `authorize` decides who may call the router's services; by default it **forbids every call**
/// (as in x3m), so opening a service is a deliberate act. `choose_node` picks the node that runs
/// a public service; by default the node that received the call.
///
/// A router may hold application state for its handlers (a read model, a pool, a client): a
/// state of type `S` ([`with_state`](Router::with_state)), handed to handlers that take a
/// [`State<S>`](crate::State) and checked at compile time, and
/// [`extension`](Router::extension)s looked up by type through the handler's
/// [`Ctx`](crate::Ctx). Each router has its own; handlers of other routers do not see them.
///
/// `Router<S>` *holds* a state of type `S`, given first with `with_state`, before the services
/// that take it. (axum's `Router<S>` is the opposite: a router still *missing* an `S`, given last
/// by its `with_state`.) The state goes into each service as it is added, so the type plays no
/// further part: [`Node::register`](crate::Node::register) takes a router of any state type, and a
/// function building a router returns `Router<AppState>` as it is:
///
/// ```
/// use std::sync::Arc;
/// use switchyard_messaging::{Message, Node, Router, State};
///
/// #[derive(Clone, Default)]
/// struct AppState {
///     greeting: Arc<str>,
/// }
///
/// async fn hello(msg: Message, State(app): State<AppState>) -> Message {
///     msg.ok_with(&*app.greeting)
/// }
///
/// fn greeter(app: AppState) -> Router<AppState> {
///     Router::new("greeter").with_state(app).service("hello", hello).authorize(|_| Ok(()))
/// }
///
/// let node = Node::new("app");
/// node.register(greeter(AppState { greeting: "hi".into() }))?;
/// node.register(Router::new("plain").authorize(|_| Ok(())))?;
/// # Ok::<(), switchyard_messaging::RegisterError>(())
/// ```
///
/// # Examples
///
/// ```
/// use switchyard_messaging::{Listing, Message, Response, Router};
///
/// async fn hello(msg: Message) -> Message {
///     msg.ok_with("hello")
/// }
///
/// let router = Router::new("greeter")
///     .service("hello", hello)
///     .doc("Says hello")
///     .private("hello_internal", hello)
///     .authorize(|msg: &Message| match msg.service() {
///         "hello" | "hello_internal" => Ok(()),
///         _ => Err(Response::forbidden("not for you")),
///     });
///
/// let public: Vec<_> = router.registered_services(Listing::Public).into_iter().map(|s| s.name).collect();
/// assert_eq!(public, ["hello"]);
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let reply = router.invoke(Message::new("hello")).await;
/// assert_eq!(reply.answer::<String>().unwrap(), "hello");
/// # });
/// ```
#[derive(Clone)]
#[must_use]
pub struct Router<S = ()> {
    name: Arc<str>,
    services: Vec<RouterService>,
    authorize: Arc<AuthorizeFn>,
    choose_node: Arc<ChooseNodeFn>,
    extensions: Extensions,
    state: S,
}

pub(crate) type AuthorizeFn = dyn Fn(&Message) -> Result<(), Response> + Send + Sync;
pub(crate) type ChooseNodeFn = dyn Fn(&Message) -> NodeChoice + Send + Sync;

#[derive(Clone)]
pub(crate) struct RouterService {
    pub(crate) info: ServiceInfo,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

/// Whether other nodes may call a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Announced to the cluster and callable from any node.
    Public,
    /// Callable only on the node that registered it.
    Private,
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
        })
    }
}

/// Which services [`Router::registered_services`] and [`Node::services`](crate::Node::services)
/// list.
///
/// Within each group, a router lists its services in the order they were added; a node, whose
/// services come from several routers, sorted by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listing {
    /// Public services.
    Public,
    /// Private services.
    Private,
    /// Private services, then public ones (x3m's order).
    All,
}

impl Listing {
    /// Whether a service of `visibility` belongs in this listing.
    pub(crate) fn includes(self, visibility: Visibility) -> bool {
        match self {
            Self::Public => visibility == Visibility::Public,
            Self::Private => visibility == Visibility::Private,
            Self::All => true,
        }
    }
}

/// What is known about a registered service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// Whether other nodes may call it.
    pub visibility: Visibility,
    /// A one-line description, if the router gave one.
    pub description: Option<String>,
    /// The name of the router that offers it.
    pub router: String,
}

/// Where a public service call should run, as decided by a router's `choose_node`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeChoice {
    /// Here, on the node that received the call.
    Local,
    /// On this node, which replies straight to the caller. At most one such hop: the chosen node
    /// runs the service without asking `choose_node` again.
    Node(NodeId),
}

fn forbid_everything(_: &Message) -> Result<(), Response> {
    Err(Response::Forbidden(None))
}

fn run_locally(_: &Message) -> NodeChoice {
    NodeChoice::Local
}

impl Router {
    /// An empty router without state; `name` appears in logs and registration errors.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            services: Vec::new(),
            authorize: Arc::new(forbid_everything),
            choose_node: Arc::new(run_locally),
            extensions: Extensions::default(),
            state: (),
        }
    }

    /// Gives the router a state: every handler added from now on may take it as a
    /// [`State<S>`](crate::State) argument, a clone per call (keep it cheap to clone: an `Arc`
    /// or a pool handle). Services added before take no state.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_messaging::{Message, Router, State};
    ///
    /// struct Catalog {
    ///     items: Vec<String>,
    /// }
    ///
    /// async fn list(msg: Message, State(catalog): State<Arc<Catalog>>) -> Message {
    ///     msg.ok_with(&catalog.items)
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let catalog = Arc::new(Catalog { items: vec!["tea".into()] });
    /// let router = Router::new("shop")
    ///     .with_state(catalog)
    ///     .service("list", list)
    ///     .authorize(|_| Ok(()));
    /// let reply = router.invoke(Message::new("list")).await;
    /// assert_eq!(reply.answer::<Vec<String>>().unwrap(), ["tea"]);
    /// # });
    /// ```
    pub fn with_state<S>(self, state: S) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router {
            name: self.name,
            services: self.services,
            authorize: self.authorize,
            choose_node: self.choose_node,
            extensions: self.extensions,
            state,
        }
    }
}

impl<S> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// Adds a public service, announced to every node of the cluster.
    pub fn service<H, Args>(self, name: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args, S>,
        Args: 'static,
    {
        self.add(name.into(), Visibility::Public, handler)
    }

    /// Adds a private service, callable only on the node that registers this router.
    pub fn private<H, Args>(self, name: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args, S>,
        Args: 'static,
    {
        self.add(name.into(), Visibility::Private, handler)
    }

    fn add<H, Args>(mut self, name: String, visibility: Visibility, handler: H) -> Self
    where
        H: Handler<Args, S>,
        Args: 'static,
    {
        self.services.push(RouterService {
            info: ServiceInfo {
                name,
                visibility,
                description: None,
                router: self.name.to_string(),
            },
            handler: Arc::new(Erased::new(handler, self.state.clone())),
        });
        self
    }

    /// Describes the service added last, in one line (x3m's `@servicedoc`). Does nothing on a
    /// router without services.
    pub fn doc(mut self, description: impl Into<String>) -> Self {
        if let Some(last) = self.services.last_mut() {
            last.info.description = Some(description.into());
        }
        self
    }

    /// Sets the authorization rule for every service of this router: `Ok(())` lets the call
    /// through, `Err(response)` answers the caller with `response` (for instance
    /// [`Response::forbidden`] with a reason). It runs on the node that first receives the call.
    pub fn authorize<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Message) -> Result<(), Response> + Send + Sync + 'static,
    {
        self.authorize = Arc::new(rule);
        self
    }

    /// Adds a value every handler of this router can borrow through its [`Ctx`](crate::Ctx)
    /// ([`Ctx::extension`](crate::Ctx::extension)), one per type: a second value of the same
    /// type replaces the first. Handlers of other routers do not see it.
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Sets the placement rule for the public services of this router (private services always
    /// run where they are called).
    pub fn choose_node<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Message) -> NodeChoice + Send + Sync + 'static,
    {
        self.choose_node = Arc::new(rule);
        self
    }

    /// The router's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The services of this router, filtered by visibility, in the order they were added (see
    /// [`Listing`]).
    pub fn registered_services(&self, listing: Listing) -> Vec<ServiceInfo> {
        let of = |visibility| {
            self.services
                .iter()
                .filter(move |service| service.info.visibility == visibility)
                .map(|service| service.info.clone())
        };
        match listing {
            Listing::Public => of(Visibility::Public).collect(),
            Listing::Private => of(Visibility::Private).collect(),
            Listing::All => of(Visibility::Private)
                .chain(of(Visibility::Public))
                .collect(),
        }
    }

    /// Whether this router's rule lets `message` through. A rule that panics lets nothing
    /// through (and does not unwind into the caller).
    pub fn is_authorized(&self, message: &Message) -> bool {
        authorize(&*self.authorize, message).is_ok()
    }

    /// Runs `message` through this router alone, as a dispatch on a node holding only this
    /// router would: authorization, the handler under the default timeout with its panics caught. Meant for
    /// unit tests of a router.
    pub async fn invoke(&self, message: Message) -> Message {
        let node = Node::new(format!("{}-invoke", self.name));
        match node.register(self.clone()) {
            Ok(()) => node.dispatch(message).await,
            Err(error) => message.return_with(Response::error(error.to_string())),
        }
    }

    pub(crate) fn into_parts(self) -> (RouterPolicy, Vec<RouterService>) {
        let policy = RouterPolicy {
            name: self.name,
            authorize: self.authorize,
            choose_node: self.choose_node,
            extensions: self.extensions,
        };
        (policy, self.services)
    }
}

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("name", &self.name)
            .field(
                "services",
                &self
                    .services
                    .iter()
                    .map(|s| (&s.info.name, s.info.visibility))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The rules a router applies to each of its services once registered. The rules are user
/// code, so they are reached only through the guarded methods below.
pub(crate) struct RouterPolicy {
    pub(crate) name: Arc<str>,
    authorize: Arc<AuthorizeFn>,
    choose_node: Arc<ChooseNodeFn>,
    pub(crate) extensions: Extensions,
}

impl RouterPolicy {
    /// The router's `authorize` verdict on `message`; a panic is a refusal with an error
    /// naming the rule.
    pub(crate) fn authorize(&self, message: &Message) -> Result<(), Response> {
        authorize(&*self.authorize, message)
    }

    /// Where the router places `message`; a panic is an error naming the rule.
    pub(crate) fn choose_node(&self, message: &Message) -> Result<NodeChoice, Response> {
        guarded(message.service(), "choose_node", || {
            (self.choose_node)(message)
        })
    }
}

/// The verdict of the `authorize` rule on `message`; a panic is a refusal with an error naming
/// the rule. The one place the rule is called.
fn authorize(rule: &AuthorizeFn, message: &Message) -> Result<(), Response> {
    guarded(message.service(), "authorize", || rule(message))?
}

/// Runs one of a router's rules (user code): a panic becomes an error naming the service and
/// the rule, answered like any refusal, instead of unwinding into whoever asked (the caller's
/// task, or a cluster connection's reader). Every rule call goes through here.
fn guarded<T>(service: &str, rule: &str, run: impl FnOnce() -> T) -> Result<T, Response> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|panic| {
        Response::error(format!(
            "the router's `{rule}` panicked for service `{service}`: {}",
            panic_text(&*panic)
        ))
    })
}
