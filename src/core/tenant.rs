//! A tenant as the core sees it: who it is, how its caller proves it, the st2 credentials its
//! executions run with, and the governance applied to what it starts.

use std::sync::Arc;

use st2_client::Secret;

use super::DispatchError;
use super::dispatch::Dispatcher;
use super::governance::Governance;
use super::governance::audit::AuditLog;
use super::governance::redact::RedactionPolicy;
use super::governance::tenants::AllowedActions;
use super::portarium::ErrorKind;

/// One Portarium tenant (workspace).
#[derive(Clone)]
pub struct Tenant {
    /// The `tenantId` its requests carry.
    pub id: String,
    token: Secret,
    /// The dispatcher holding this tenant's st2 client (its own credentials, or the shared ones).
    pub dispatcher: Dispatcher,
    allowed: AllowedActions,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) redaction: RedactionPolicy,
}

impl Tenant {
    /// A tenant whose caller sends `token`, running its executions through `dispatcher`.
    pub fn new(id: String, token: Secret, dispatcher: Dispatcher, allowed: AllowedActions) -> Self {
        Self {
            id,
            token,
            dispatcher,
            allowed,
            audit: None,
            redaction: RedactionPolicy::default(),
        }
    }

    /// This tenant with `governance` applied: the pack gate on its dispatcher, the audit log
    /// and the redaction policy on its answers.
    pub fn governed(mut self, governance: &Governance) -> Self {
        if let Some(gate) = &governance.gate {
            self.dispatcher = self.dispatcher.with_gate(gate.clone());
        }
        self.audit = governance.audit.clone();
        self.redaction = governance.redaction.clone();
        self
    }

    /// Whether `presented` is this tenant's token; the time taken does not depend on where
    /// the two differ.
    pub fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.token.expose().as_bytes(), presented.as_bytes())
    }

    /// Whether this tenant may start `action`: its `allowed_actions`, then the pack gate.
    pub async fn may_run(&self, action: &str) -> Result<(), DispatchError> {
        if !self.allowed.permits(action) {
            return Err(DispatchError::refused(
                ErrorKind::Unauthorized,
                format!(
                    "tenant {} may not run {action}: it is not in the tenant's allowed_actions",
                    self.id
                ),
            ));
        }
        self.dispatcher.admit(action).await.map(drop)
    }

    /// The audit log this tenant's decisions go to, if one is configured.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_deref()
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}
