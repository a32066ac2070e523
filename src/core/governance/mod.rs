//! Governance: what may run, with whose credentials, and what must never leak.

pub mod anchor;
pub mod audit;
pub mod canonical;
pub mod manifest;
pub mod packs;
pub mod redact;
pub mod secrets;
pub mod tenants;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use audit::{AuditConfig, AuditError, AuditLog};
use packs::{PackGate, PacksPolicy, PolicyError};
use redact::RedactionPolicy;
use secrets::SecretBook;
use st2_basics::FieldError;

/// `governance` in the config: the packs gate, the audit log, extra secret keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Reviewed-packs policy file; when set, every dispatch passes the pack gate.
    #[serde(default)]
    pub packs_policy: Option<PathBuf>,
    /// How long an installed pack version read from st2 is trusted.
    #[serde(default = "default_pack_cache_ttl")]
    pub pack_cache_ttl_ms: u64,
    /// Parameter names redacted in addition to st2's `secret: true` and credential-like keys.
    #[serde(default)]
    pub redact_keys: Vec<String>,
    /// The tamper-evident audit log; unset, no audit records are written.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            packs_policy: None,
            pack_cache_ttl_ms: default_pack_cache_ttl(),
            redact_keys: Vec::new(),
            audit: None,
        }
    }
}

fn default_pack_cache_ttl() -> u64 {
    30_000
}

impl GovernanceConfig {
    /// Appends a [`FieldError`] for each setting that cannot be used.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(path) = &self.packs_policy
            && let Err(e) = PacksPolicy::load(path)
        {
            errors.push(FieldError {
                field: "governance.packs_policy".into(),
                reason: e.to_string(),
            });
        }
        if let Some(audit) = &self.audit {
            let dir = audit.path.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                errors.push(FieldError {
                    field: "governance.audit.path".into(),
                    reason: format!(
                        "the directory of {} does not exist; create it or choose another path",
                        audit.path.display()
                    ),
                });
            }
        }
        if let Some(audit) = &self.audit {
            let dir = audit
                .anchor_file
                .as_ref()
                .and_then(|f| f.parent())
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                errors.push(FieldError {
                    field: "governance.audit.anchor_file".into(),
                    reason: format!(
                        "the directory {} does not exist; create it or choose another path",
                        dir.display()
                    ),
                });
            }
            if audit.anchor_interval < Duration::from_secs(1) {
                errors.push(FieldError {
                    field: "governance.audit.anchor_interval".into(),
                    reason: "must be at least 1s".into(),
                });
            }
        }
        if let Some(i) = self.redact_keys.iter().position(|k| k.trim().is_empty()) {
            errors.push(FieldError {
                field: format!("governance.redact_keys[{i}]"),
                reason: "must not be empty".into(),
            });
        }
    }
}

/// Why the governance controls could not start.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The packs policy file.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The audit log.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The controls a running adapter applies to every dispatch.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    /// The reviewed-packs gate, when a policy is configured.
    pub gate: Option<Arc<PackGate>>,
    /// The audit log, when configured.
    pub audit: Option<Arc<AuditLog>>,
    /// Keys redacted beyond the credential-looking ones.
    pub redaction: RedactionPolicy,
    /// The secret values seen per dispatch key, shared by every tenant and the lifecycle
    /// events (keys are tenant-bound, so one book serves all).
    pub secrets: Arc<SecretBook>,
}

impl Governance {
    /// Loads the policy and opens the audit log named in `config`.
    pub fn from_config(config: &GovernanceConfig) -> Result<Self, GovernanceError> {
        let gate = match &config.packs_policy {
            Some(path) => Some(Arc::new(PackGate::new(
                PacksPolicy::load(path)?,
                Duration::from_millis(config.pack_cache_ttl_ms),
            ))),
            None => None,
        };
        let audit = match &config.audit {
            Some(a) => Some(Arc::new(AuditLog::open(a)?)),
            None => None,
        };
        Ok(Self {
            gate,
            audit,
            redaction: RedactionPolicy::new(&config.redact_keys),
            secrets: Arc::default(),
        })
    }
}
