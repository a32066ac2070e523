//! A tenant as the core sees it: who it is, how its caller proves it, the st2 credentials its
//! executions run with, and the governance applied to what it starts.

use std::sync::Arc;

use serde_json::Value;
use st2_client::Secret;
use st2_client::models::{ActionParameters, JsonObject};

use super::DispatchError;
use super::dispatch::Dispatcher;
use super::dispatch::validate::ActionRef;
use super::governance::Governance;
use super::governance::audit::AuditLog;
use super::governance::redact::{MASKED, RedactionPolicy, redact_value};
use super::governance::secrets::SecretBook;
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
    pub(super) secrets: Arc<SecretBook>,
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
            secrets: Arc::default(),
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
        self.secrets = governance.secrets.clone();
        self
    }

    /// Whether `presented` is this tenant's token; the time taken does not depend on where
    /// the two differ.
    pub fn token_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.token.expose().as_bytes(), presented.as_bytes())
    }

    /// Whether this tenant may start `action`: its `allowed_actions`, then the pack gate; the
    /// action ref it admitted.
    pub async fn may_run(&self, action: &str) -> Result<ActionRef, DispatchError> {
        if !self.allowed.permits(action) {
            return Err(DispatchError::refused(
                ErrorKind::Unauthorized,
                format!(
                    "tenant {} may not run {action}: it is not in the tenant's allowed_actions",
                    self.id
                ),
            ));
        }
        self.dispatcher.admit(action).await
    }

    /// Books the secret values of `payload` (a request for `action`) under `key` — before st2
    /// is asked to run it, so the lifecycle events of its execution find them — and answers
    /// what makes a value of `action` secret, for [`Tenant::secrets_of`].
    pub async fn book_secrets(&self, action: &str, key: &str, payload: &JsonObject) -> Booked {
        // Through the schema cache: the dispatch reads the same schema moments later.
        let schema = self.dispatcher.parameters(action).await.ok();
        let policy = match &schema {
            Some(schema) => self.redaction.clone().with_secret_parameters(schema),
            None => self.redaction.clone(),
        };
        self.secrets
            .remember(key, &policy.secret_values(payload), false);
        Booked {
            key: key.to_string(),
            schema_secret: schema
                .as_ref()
                .is_some_and(|s| s.parameters.values().any(|p| p.secret)),
            policy,
            schema,
        }
    }

    /// The secret values to scrub from anything said about `execution_id` (booked as
    /// `booked`), longest first: those the book holds for its key — every request's under it —
    /// and, while the book has not got them from st2, the execution's own, read from st2 with
    /// `show_secrets` when anything of it may be secret. st2 hiding them (no admin) leaves the
    /// book's.
    pub async fn secrets_of(&self, execution_id: Option<&str>, booked: &Booked) -> Vec<String> {
        let (mut values, confirmed) = self.secrets.recall(&booked.key);
        if let Some(id) = execution_id
            && (booked.schema_secret || !values.is_empty())
            && !confirmed
            && !self.secrets.st2_hides()
            && let Ok(own) = self
                .dispatcher
                .st2()
                .executions()
                .get(id)
                .include(&["parameters"])
                .show_secrets()
                .send()
                .await
        {
            if own.parameters.values().any(|v| v.as_str() == Some(MASKED)) {
                self.secrets.note_st2_hides();
            } else {
                let shown = booked.policy.secret_values(&own.parameters);
                self.secrets.remember(&booked.key, &shown, true);
                values.extend(shown);
            }
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        values
    }

    /// The audit log this tenant's decisions go to, if one is configured.
    pub fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_deref()
    }
}

/// What [`Tenant::book_secrets`] learnt of an action: which values are secret.
#[derive(Debug, Clone)]
pub struct Booked {
    key: String,
    /// st2's schema marks a parameter of the action secret.
    schema_secret: bool,
    policy: RedactionPolicy,
    /// The action's schema as the booking read it, for the dispatch to check its payload
    /// against instead of reading it again.
    schema: Option<Arc<ActionParameters>>,
}

impl Booked {
    /// The action's schema the booking read, if st2 gave it.
    pub fn schema(&self) -> Option<&Arc<ActionParameters>> {
        self.schema.as_ref()
    }

    /// `value` with the values of the action's secret keys replaced, for audit records.
    pub fn redact(&self, value: &Value) -> Value {
        redact_value(value, &self.policy)
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
