//! `adapter-manifest.yaml`: Portarium `AdapterRegistrationV1` documents, one per port family,
//! each with our `x-st2` section, checked with Portarium's parser rules and ours.
//!
//! Portarium's parser (`parseAdapterRegistrationV1`) copies the fields it knows and ignores
//! the rest, so `x-st2` travels with the registration without disturbing it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::packs::PacksPolicy;
use crate::core::dispatch::validate::ActionRef;

/// Portarium's `PORT_FAMILIES`.
pub const PORT_FAMILIES: [&str; 20] = [
    "FinanceAccounting",
    "PaymentsBilling",
    "ProcurementSpend",
    "HrisHcm",
    "Payroll",
    "CrmSales",
    "CustomerSupport",
    "ItsmItOps",
    "IamDirectory",
    "SecretsVaulting",
    "MarketingAutomation",
    "AdsPlatforms",
    "CommsCollaboration",
    "ProjectsWorkMgmt",
    "DocumentsEsign",
    "AnalyticsBi",
    "MonitoringIncident",
    "ComplianceGrc",
    "RoboticsActuation",
    "SoftwareDev",
];

/// Portarium's canonical object kinds plus `ExternalObjectRef`, the valid kind strings.
pub const KINDS: [&str; 16] = [
    "Party",
    "Ticket",
    "Invoice",
    "Payment",
    "Task",
    "Campaign",
    "Consent",
    "Asset",
    "Document",
    "Subscription",
    "Opportunity",
    "Product",
    "Order",
    "Account",
    "PrivacyPolicy",
    "ExternalObjectRef",
];

/// `PORT_FAMILY_CAPABILITIES.ItsmItOps` with each capability's output kind (port taxonomy).
pub const ITSM_IT_OPS: [(&str, &str); 11] = [
    ("incident:read", "Ticket"),
    ("incident:write", "Ticket"),
    ("change:read", "Ticket"),
    ("change:write", "Ticket"),
    ("change:approve", "Ticket"),
    ("asset:read", "Asset"),
    ("asset:write", "Asset"),
    ("cmdb:read", "Asset"),
    ("problem:read", "Ticket"),
    ("problem:write", "Ticket"),
    ("sr:read", "Ticket"),
];

/// `PORT_FAMILY_CAPABILITIES.MonitoringIncident` with each capability's output kind.
pub const MONITORING_INCIDENT: [(&str, &str); 11] = [
    ("alert:read", "ExternalObjectRef"),
    ("alert:write", "ExternalObjectRef"),
    ("incident:read", "Ticket"),
    ("incident:write", "Ticket"),
    ("schedule:read", "ExternalObjectRef"),
    ("schedule:write", "ExternalObjectRef"),
    ("escalation:read", "ExternalObjectRef"),
    ("service:read", "ExternalObjectRef"),
    ("statuspage:write", "ExternalObjectRef"),
    ("maintenance:read", "ExternalObjectRef"),
    ("notification:write", "ExternalObjectRef"),
];

/// The families this adapter serves, with their capabilities.
pub fn family_capabilities(family: &str) -> Option<&'static [(&'static str, &'static str)]> {
    match family {
        "ItsmItOps" => Some(&ITSM_IT_OPS),
        "MonitoringIncident" => Some(&MONITORING_INCIDENT),
        _ => None,
    }
}

/// One broken rule, with the path of the field (`[1].executionPolicy.egressAllowlist[0]`;
/// the leading index is the YAML document, from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The adapter-local section of one registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct St2Extension {
    /// Capability → the st2 action ref that implements it.
    pub operation_map: std::collections::BTreeMap<String, String>,
    /// The reviewed-packs policy file, relative to the manifest.
    pub packs_policy: String,
    /// CloudEvent types (`com.portarium.<aggregate>.<Event>`) this adapter accepts or emits.
    pub event_classes: Vec<String>,
}

/// One checked registration: the fields this adapter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `portFamily`.
    pub port_family: String,
    /// `providerSlug`.
    pub provider_slug: String,
    /// `x-st2`.
    pub st2: St2Extension,
}

/// Why a manifest cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The file cannot be read or is not YAML, so no rule could be checked.
    Unusable(Violation),
    /// The documents break rules; every violation is listed.
    Invalid(Vec<Violation>),
}

/// Reads and checks a manifest file.
pub fn check_file(path: &Path) -> Result<Vec<Registration>, ManifestError> {
    let text =
        st2_basics::files::read_text(path, st2_basics::files::MAX_TEXT_FILE).map_err(|e| {
            ManifestError::Unusable(Violation {
                path: path.display().to_string(),
                message: format!("cannot read the manifest: {e}"),
            })
        })?;
    let docs = documents(&text).map_err(ManifestError::Unusable)?;
    check_documents(&docs, path.parent().unwrap_or(Path::new("."))).map_err(ManifestError::Invalid)
}

/// Checks manifest YAML; `base` is where relative file names (`x-st2.packsPolicy`) resolve.
pub fn check(text: &str, base: &Path) -> Result<Vec<Registration>, Vec<Violation>> {
    check_documents(&documents(text).map_err(|v| vec![v])?, base)
}

/// The YAML documents of a manifest, or the first syntax error: after one the parser cannot
/// resynchronise and would yield the same error forever.
fn documents(text: &str) -> Result<Vec<Value>, Violation> {
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        docs.push(Value::deserialize(doc).map_err(|e| Violation {
            path: format!("[{i}]"),
            message: format!("not valid YAML: {e}"),
        })?);
    }
    Ok(docs)
}

fn check_documents(docs: &[Value], base: &Path) -> Result<Vec<Registration>, Vec<Violation>> {
    let mut out = Vec::new();
    if docs.is_empty() {
        out.push(Violation {
            path: "[0]".into(),
            message: "the manifest has no registration documents".into(),
        });
    }
    let mut families = BTreeSet::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut c = Checker {
            out: &mut out,
            base,
        };
        c.registration(&format!("[{i}]"), doc);
        if let Some(f) = doc.get("portFamily").and_then(Value::as_str)
            && !families.insert(f.to_string())
        {
            out.push(Violation {
                path: format!("[{i}].portFamily"),
                message: format!("{f} is registered twice; one document per port family"),
            });
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(docs
        .iter()
        .map(|d| Registration {
            port_family: d["portFamily"].as_str().unwrap_or_default().to_string(),
            provider_slug: d["providerSlug"].as_str().unwrap_or_default().to_string(),
            st2: serde_json::from_value(d["x-st2"].clone()).expect("checked above"),
        })
        .collect())
}

struct Checker<'a> {
    out: &'a mut Vec<Violation>,
    base: &'a Path,
}

impl Checker<'_> {
    fn bad(&mut self, path: &str, message: impl Into<String>) {
        self.out.push(Violation {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The field `key` of `obj`, reporting it missing when absent.
    fn field<'v>(&mut self, obj: &'v Map<String, Value>, at: &str, key: &str) -> Option<&'v Value> {
        let v = obj.get(key);
        if v.is_none() {
            self.bad(&format!("{at}.{key}"), "required field is missing");
        }
        v
    }

    fn string<'v>(&mut self, obj: &'v Map<String, Value>, at: &str, key: &str) -> Option<&'v str> {
        match self.field(obj, at, key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::String(_) => {
                self.bad(&format!("{at}.{key}"), "must not be empty");
                None
            }
            other => {
                self.bad(
                    &format!("{at}.{key}"),
                    format!("must be a string, not {other}"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, obj: &Map<String, Value>, at: &str, key: &str) -> Option<bool> {
        match self.field(obj, at, key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.bad(
                    &format!("{at}.{key}"),
                    format!("must be true or false, not {other}"),
                );
                None
            }
        }
    }

    fn fixed(&mut self, obj: &Map<String, Value>, at: &str, key: &str, want: &str) {
        if let Some(got) = self.string(obj, at, key)
            && got != want
        {
            self.bad(
                &format!("{at}.{key}"),
                format!("must be {want:?} (the only value Portarium accepts), not {got:?}"),
            );
        }
    }

    fn registration(&mut self, at: &str, doc: &Value) {
        let Some(obj) = doc.as_object() else {
            self.bad(at, "a registration must be a mapping of fields");
            return;
        };
        match self.field(obj, at, "schemaVersion") {
            Some(v) if v.as_u64() == Some(1) => {}
            Some(v) => self.bad(
                &format!("{at}.schemaVersion"),
                format!("must be 1, not {v}"),
            ),
            None => {}
        }
        self.string(obj, at, "adapterId");
        self.string(obj, at, "workspaceId");
        self.string(obj, at, "providerSlug");
        let family = self.string(obj, at, "portFamily");
        let capabilities = match family {
            Some(f) if !PORT_FAMILIES.contains(&f) => {
                self.bad(
                    &format!("{at}.portFamily"),
                    format!("{f:?} is not a Portarium port family"),
                );
                None
            }
            Some(f) => {
                let caps = family_capabilities(f);
                if caps.is_none() {
                    self.bad(
                        &format!("{at}.portFamily"),
                        format!(
                            "{f} is not served by this adapter; use ItsmItOps or MonitoringIncident"
                        ),
                    );
                }
                caps.map(|c| (f, c))
            }
            None => None,
        };
        self.boolean(obj, at, "enabled");
        let claimed = self.matrix(obj, at, capabilities);
        self.execution_policy(obj, at);
        self.machines(obj, at);
        self.extension(obj, at, &claimed);
    }

    /// Checks `capabilityMatrix`; returns the capabilities it claims.
    fn matrix(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        family: Option<(&str, &[(&str, &str)])>,
    ) -> BTreeSet<String> {
        let mut claimed = BTreeSet::new();
        let path = format!("{at}.capabilityMatrix");
        let entries = match self.field(obj, at, "capabilityMatrix") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(_) => {
                self.bad(&path, "must be a non-empty list of capability claims");
                return claimed;
            }
            None => return claimed,
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(e) = entry.as_object() else {
                self.bad(
                    &at,
                    "must be a mapping {capability, operation, requiresAuth, ...}",
                );
                continue;
            };
            self.boolean(e, &at, "requiresAuth");
            let capability = e.get("capability").and_then(Value::as_str);
            let operation = e.get("operation").and_then(Value::as_str);
            let name = match (capability, operation) {
                (Some(c), Some(o)) if c != o => {
                    self.bad(
                        &format!("{at}.operation"),
                        format!("must equal capability {c:?}"),
                    );
                    None
                }
                (Some(c), _) => Some(c),
                (None, Some(o)) if !is_entity_verb(o) => {
                    self.bad(
                        &format!("{at}.operation"),
                        format!("{o:?} must be entity:verb"),
                    );
                    None
                }
                (None, Some(o)) => Some(o),
                (None, None) => {
                    self.bad(&format!("{at}.capability"), "required field is missing");
                    None
                }
            };
            let Some(name) = name else { continue };
            let expected = family.and_then(|(_, caps)| caps.iter().find(|(c, _)| *c == name));
            if let Some((f, _)) = family
                && expected.is_none()
            {
                self.bad(
                    &format!("{at}.capability"),
                    format!("{name:?} is not a {f} capability"),
                );
            }
            if !claimed.insert(name.to_string()) {
                self.bad(
                    &format!("{at}.capability"),
                    format!("{name} is listed twice"),
                );
            }
            for key in ["inputKind", "outputKind"] {
                match e.get(key) {
                    None => {}
                    Some(Value::String(k)) if KINDS.contains(&k.as_str()) => {}
                    Some(other) => self.bad(
                        &format!("{at}.{key}"),
                        format!("{other} is not a canonical object kind or ExternalObjectRef"),
                    ),
                }
            }
            if let (Some((_, want)), Some(got)) =
                (expected, e.get("outputKind").and_then(Value::as_str))
                && got != *want
            {
                self.bad(
                    &format!("{at}.outputKind"),
                    format!("{name} returns {want} in Portarium's port taxonomy, not {got}"),
                );
            }
        }
        if let Some((f, caps)) = family {
            let missing: Vec<&str> = caps
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| !claimed.contains(*c))
                .collect();
            if !missing.is_empty() {
                self.bad(
                    &path,
                    format!("incomplete for {f}: missing {}", missing.join(", ")),
                );
            }
        }
        claimed
    }

    fn execution_policy(&mut self, obj: &Map<String, Value>, at: &str) {
        let path = format!("{at}.executionPolicy");
        let policy = match self.field(obj, at, "executionPolicy") {
            Some(Value::Object(p)) => p,
            Some(_) => return self.bad(&path, "must be a mapping"),
            None => return,
        };
        self.fixed(policy, &path, "tenantIsolationMode", "PerTenantWorker");
        self.fixed(policy, &path, "credentialScope", "capabilityMatrix");
        if self.boolean(policy, &path, "sandboxVerified") == Some(false) {
            self.bad(
                &format!("{path}.sandboxVerified"),
                "must be true; Portarium refuses to register an unverified sandbox",
            );
        }
        self.boolean(policy, &path, "sandboxAvailable");
        let list_path = format!("{path}.egressAllowlist");
        match self.field(policy, &path, "egressAllowlist") {
            Some(Value::Array(list)) if !list.is_empty() => {
                for (i, entry) in list.iter().enumerate() {
                    let at = format!("{list_path}[{i}]");
                    match entry.as_str().map(url::Url::parse) {
                        Some(Ok(u)) if u.scheme() == "https" && u.host().is_some() => {}
                        Some(Ok(u)) if u.scheme() == "http" => {
                            self.bad(&at, "http:// not allowed, use https")
                        }
                        Some(Ok(u)) => self.bad(
                            &at,
                            format!("{}: is not allowed, use an https:// URL", u.scheme()),
                        ),
                        _ => self.bad(
                            &at,
                            format!("{entry} is not a URL; write https://host/path"),
                        ),
                    }
                }
            }
            Some(_) => self.bad(&list_path, "must be a non-empty list of https:// URLs"),
            None => {}
        }
    }

    fn machines(&mut self, obj: &Map<String, Value>, at: &str) {
        let path = format!("{at}.machineRegistrations");
        let list = match obj.get("machineRegistrations") {
            None => return,
            Some(Value::Array(l)) => l,
            Some(_) => return self.bad(&path, "must be a list when given"),
        };
        for (i, m) in list.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(m) = m.as_object() else {
                self.bad(&at, "must be a mapping {machineId, endpointUrl, active}");
                continue;
            };
            self.string(m, &at, "machineId");
            self.boolean(m, &at, "active");
            if let Some(url) = self.string(m, &at, "endpointUrl")
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                self.bad(
                    &format!("{at}.endpointUrl"),
                    "must start with http:// or https://",
                );
            }
        }
    }

    fn extension(&mut self, obj: &Map<String, Value>, at: &str, claimed: &BTreeSet<String>) {
        let path = format!("{at}.x-st2");
        let ext = match self.field(obj, at, "x-st2") {
            Some(Value::Object(e)) => e,
            Some(_) => {
                return self.bad(
                    &path,
                    "must be a mapping {operationMap, packsPolicy, eventClasses}",
                );
            }
            None => return,
        };
        for key in ext.keys() {
            if !["operationMap", "packsPolicy", "eventClasses"].contains(&key.as_str()) {
                self.bad(
                    &format!("{path}.{key}"),
                    "unknown field; expected operationMap, packsPolicy or eventClasses",
                );
            }
        }
        let policy =
            self.string(ext, &path, "packsPolicy").and_then(|file| {
                match PacksPolicy::load(&self.base.join(file)) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.bad(&format!("{path}.packsPolicy"), e.to_string());
                        None
                    }
                }
            });
        let map_path = format!("{path}.operationMap");
        match self.field(ext, &path, "operationMap") {
            Some(Value::Object(map)) => {
                for (cap, target) in map {
                    let at = format!("{map_path}.{cap}");
                    if !claimed.contains(cap) {
                        self.bad(&at, "maps a capability the capabilityMatrix does not claim");
                    }
                    let Some(target) = target.as_str() else {
                        self.bad(
                            &at,
                            "must be an st2 action ref such as itsm.create_incident",
                        );
                        continue;
                    };
                    match ActionRef::parse(target) {
                        Err(e) => self.bad(&at, e.to_string()),
                        Ok(action) => {
                            if let Some(policy) = &policy
                                && let Err(verdict) = policy.usable_review(&action.pack)
                            {
                                self.bad(
                                    &at,
                                    format!("{target}: pack {} is {verdict}", action.pack),
                                );
                            }
                        }
                    }
                }
                let unmapped: Vec<&str> = claimed
                    .iter()
                    .filter(|c| !map.contains_key(c.as_str()))
                    .map(String::as_str)
                    .collect();
                if !unmapped.is_empty() {
                    self.bad(
                        &map_path,
                        format!("no st2 action for {}", unmapped.join(", ")),
                    );
                }
            }
            Some(_) => self.bad(&map_path, "must map each capability to an st2 action ref"),
            None => {}
        }
        let classes_path = format!("{path}.eventClasses");
        match self.field(ext, &path, "eventClasses") {
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut seen = BTreeSet::new();
                for (i, c) in list.iter().enumerate() {
                    let at = format!("{classes_path}[{i}]");
                    match c.as_str() {
                        Some(t) if !is_event_class(t) => self.bad(
                            &at,
                            format!("{t:?} must be com.portarium.<aggregate>.<EventName> (no .vN suffix: Portarium routes on the last segment)"),
                        ),
                        Some(t) if !seen.insert(t) => self.bad(&at, format!("{t} is listed twice")),
                        Some(_) => {}
                        None => self.bad(&at, "must be a string"),
                    }
                }
            }
            Some(_) => self.bad(
                &classes_path,
                "must be a non-empty list of CloudEvent types",
            ),
            None => {}
        }
    }
}

fn is_entity_verb(op: &str) -> bool {
    op.split_once(':').is_some_and(|(e, v)| {
        let ok = |s: &str| !s.is_empty() && !s.contains(':') && !s.chars().any(char::is_whitespace);
        ok(e) && ok(v)
    })
}

/// `com.portarium.<aggregate>.<EventName>`: at least four segments, the last an event name.
fn is_event_class(t: &str) -> bool {
    let segments: Vec<&str> = t.split('.').collect();
    t.starts_with("com.portarium.")
        && segments.len() >= 4
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        && segments
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_classes_and_operations_follow_portariums_forms() {
        assert!(is_event_class("com.portarium.run.ActionCompleted"));
        assert!(!is_event_class("com.portarium.run.ActionCompleted.v1"));
        assert!(!is_event_class("com.example.run.ActionCompleted"));
        assert!(!is_event_class("com.portarium.ActionCompleted"));
        assert!(is_entity_verb("incident:read"));
        assert!(!is_entity_verb("incident read"));
        assert!(!is_entity_verb("a:b:c"));
    }
}
