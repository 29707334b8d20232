//! Application state a router hands to its handlers: checked at compile time ([`State`]) or
//! looked up by type ([`Ctx::extension`](crate::Ctx::extension)).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// The state of the router a handler belongs to, given to handlers that take it as their last
/// argument (see [`Router::with_state`](crate::Router::with_state)).
///
/// Each call gets a clone of the router's state, so keep the state cheap to clone: an `Arc`, a
/// connection pool handle, or a struct of those. A handler taking a `State<S>` can be added only
/// to a router holding an `S`: the compiler checks it.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, RwLock};
/// use switchyard_messaging::{Message, PayloadError, Router, State};
///
/// /// A read model kept up to date elsewhere and read by a query service.
/// type Balances = Arc<RwLock<HashMap<String, u64>>>;
///
/// async fn balance(msg: Message, State(balances): State<Balances>) -> Result<Message, PayloadError> {
///     let account: String = msg.request()?;
///     let balance = balances.read().unwrap_or_else(|e| e.into_inner()).get(&account).copied();
///     Ok(msg.ok_with(&balance))
/// }
///
/// let balances = Balances::default();
/// let router = Router::new("queries").with_state(balances.clone()).service("balance", balance);
/// # let _ = router;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct State<S>(pub S);

impl<S> Deref for State<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S> DerefMut for State<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.0
    }
}

/// Values of any type, at most one per type, that a router's handlers reach through their
/// [`Ctx`](crate::Ctx). Shared by every call of the router's services: a look-up borrows, it
/// never clones.
#[derive(Clone, Default)]
pub(crate) struct Extensions {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Extensions {
    /// Adds `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if one was added.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// How many values it holds (a type map cannot name its keys, so `Debug` prints this).
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}
