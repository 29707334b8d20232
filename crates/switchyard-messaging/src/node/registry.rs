//! The services registered on one node, read without locks.

use std::collections::HashMap;
use std::sync::Arc;

use crate::RegisterError;
use crate::handler::ErasedHandler;
use crate::router::{RouterPolicy, RouterService, ServiceInfo};

/// One service as the dispatcher needs it: the handler and its router's rules.
pub(crate) struct LocalService {
    pub(crate) info: ServiceInfo,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) policy: Arc<RouterPolicy>,
}

/// An immutable snapshot of a node's services. Registration builds a new snapshot and swaps it
/// in, so every dispatch reads one without taking a lock.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    services: HashMap<Arc<str>, Arc<LocalService>>,
}

impl Registry {
    pub(crate) fn get(&self, service: &str) -> Option<&Arc<LocalService>> {
        self.services.get(service)
    }

    pub(crate) fn services(&self) -> impl Iterator<Item = &Arc<LocalService>> {
        self.services.values()
    }

    /// This registry plus a router's services, or the first clash.
    pub(crate) fn with_router(
        &self,
        policy: RouterPolicy,
        services: Vec<RouterService>,
    ) -> Result<Self, RegisterError> {
        let policy = Arc::new(policy);
        let mut next = self.clone();
        for service in services {
            let name: Arc<str> = Arc::from(service.info.name.as_str());
            if let Some(existing) = next.services.get(&name) {
                return Err(RegisterError::DuplicateService {
                    service: service.info.name,
                    router: policy.name.to_string(),
                    registered_by: existing.info.router.clone(),
                });
            }
            next.services.insert(
                name,
                Arc::new(LocalService {
                    info: service.info,
                    handler: service.handler,
                    policy: policy.clone(),
                }),
            );
        }
        Ok(next)
    }
}
