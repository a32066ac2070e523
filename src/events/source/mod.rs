//! Where Portarium's events come in, beside [`super::sink`] where lifecycle events go out:
//! the JetStream consumer here, and the `POST /v1/events` route (a server handler) — both
//! through the same checks in [`super::inbound`].

pub mod nats;

use std::sync::Arc;

use st2_client::St2Client;

/// The st2 client of a configured tenant, by tenant id; `None` for an unknown tenant.
pub type TenantClients = Arc<dyn Fn(&str) -> Option<St2Client> + Send + Sync>;
