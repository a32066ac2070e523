//! The adapter's configuration: one typed struct assembled from each component's own section,
//! read from YAML, overridden by `PORTARIUM_ST2_*` environment variables, and validated (every
//! component checks its own section) before anything starts.
//!
//! Environment overrides address a field by its path, upper-cased, with `__` between
//! levels: `PORTARIUM_ST2_LISTEN`, `PORTARIUM_ST2_ST2__BASE_URL`,
//! `PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES`. Values are read as YAML scalars, so numbers and
//! booleans work unquoted; quote a string that looks like a number (`'"123"'`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use st2_basics::FieldError;
use st2_client::St2Config;

pub use crate::core::config::{DispatchConfig, TenantConfig, TenantSt2};

/// Prefix of every environment variable that overrides a config field.
pub const ENV_PREFIX: &str = "PORTARIUM_ST2_";
/// Environment variable naming the config file (read by the CLI, not an override).
pub const ENV_CONFIG_FILE: &str = "PORTARIUM_ST2_CONFIG";
/// The documented example configuration (`docs/config.example.yaml`).
pub const EXAMPLE: &str = include_str!("../docs/config.example.yaml");

/// The whole adapter configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the adapter's HTTP API binds to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The StackStorm cluster to drive (`st2_client`'s own section).
    pub st2: St2Config,
    /// Who may call the adapter: one entry per Portarium tenant (workspace).
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// How long dispatches wait for st2.
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// The adapter's own listener: TLS and mutual TLS (`crate::server::tls`).
    #[serde(default)]
    pub server: crate::server::tls::ListenerConfig,
    /// Pack review gate, audit log and redaction (`crate::core::governance`).
    #[serde(default)]
    pub governance: crate::core::governance::GovernanceConfig,
    /// Scraping st2's metrics and exporting telemetry over OTLP.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Portarium events: lifecycle out, event classes in.
    #[serde(default)]
    pub events: crate::events::EventsConfig,
}

/// Logging settings; `RUST_LOG` overrides `level` when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `portarium_st2=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}
fn default_log_level() -> String {
    "info".to_string()
}
/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax {
        /// The file (or `<string>`).
        path: String,
        /// Parser message with line and column.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("{var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field has the wrong type, an unknown name, or an unresolvable secret.
    #[error("{field}: {message}{origin}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// The decoder's message.
        message: String,
        /// ` (set by VAR)` when an environment variable supplied the value.
        origin: String,
    },
    /// Values decode but break a rule; every broken rule is listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl Config {
    /// Loads `path` (or nothing, when `None`), applies `PORTARIUM_ST2_*` from the process
    /// environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (yaml, name) = match path {
            Some(p) => (
                st2_basics::files::read_text(p, st2_basics::files::MAX_TEXT_FILE).map_err(
                    |source| ConfigError::Read {
                        path: p.to_path_buf(),
                        source,
                    },
                )?,
                p.display().to_string(),
            ),
            None => (String::new(), "<none>".to_string()),
        };
        Self::from_yaml(&yaml, &name, std::env::vars())
    }

    /// Parses `yaml`, applies overrides from `env` (only `PORTARIUM_ST2_*` entries are
    /// looked at), and validates. `name` labels the source in error messages.
    pub fn from_yaml(
        yaml: &str,
        name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree: Value = if yaml.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_norway::from_str(yaml).map_err(|e| ConfigError::Syntax {
                path: name.to_string(),
                message: e.to_string(),
            })?
        };
        if !tree.is_mapping() {
            return Err(ConfigError::Syntax {
                path: name.to_string(),
                message: "the top level must be a mapping of field names to values".into(),
            });
        }
        let mut applied: Vec<(String, String)> = Vec::new();
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != ENV_CONFIG_FILE)
            .collect();
        overrides.sort();
        for (var, raw) in overrides {
            let path = env_path(&var)?;
            set_path(&mut tree, &path, parse_scalar(&raw)).map_err(|reason| ConfigError::Env {
                var: var.clone(),
                reason,
            })?;
            applied.push((path.join("."), var));
        }
        let moved = renamed_fields(&tree);
        if !moved.is_empty() {
            return Err(ConfigError::Invalid(moved));
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            let origin = applied
                .iter()
                .find(|(p, _)| field == *p || field.starts_with(&format!("{p}.")))
                .map(|(_, var)| format!(" (set by {var})"))
                .unwrap_or_default();
            ConfigError::Field {
                field: if field == "." {
                    "<top level>".into()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
                origin,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule a decoded config must satisfy, reporting all failures at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        self.st2.validate(&mut errors);
        crate::core::config::validate_tenants(&self.tenants, &mut errors);
        self.governance.validate(&mut errors);
        if let Some(Err(e)) = self.server.tls.as_ref().map(|t| t.acceptor()) {
            errors.push(FieldError {
                field: format!("server.tls.{}", e.field),
                reason: e.reason,
            });
        }
        self.telemetry.validate(&mut errors);
        self.events.validate(&mut errors);
        self.dispatch.validate(&mut errors);
        self.server.validate_limits(
            std::time::Duration::from_millis(self.dispatch.max_wait_ms),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

/// Every field of an earlier version still set in `tree`, each named with its replacement.
fn renamed_fields(tree: &Value) -> Vec<FieldError> {
    let sections: [(&str, &[(&str, &str)]); 3] = [
        ("st2", st2_client::config::RENAMED),
        ("telemetry", crate::telemetry::config::RENAMED),
        ("events", crate::events::config::RENAMED),
    ];
    let mut found = Vec::new();
    for (section, renamed) in sections {
        for (old, new) in renamed {
            let path: Vec<&str> = std::iter::once(section).chain(old.split('.')).collect();
            let mut node = Some(tree);
            for key in &path {
                node = node.and_then(|n| n.get(*key));
            }
            if node.is_some() {
                found.push(FieldError::new(
                    path.join("."),
                    format!("this field was renamed; write {section}.{new} instead"),
                ));
            }
        }
    }
    found
}

/// `PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES` → `["st2", "retry", "max_retries"]`.
fn env_path(var: &str) -> Result<Vec<String>, ConfigError> {
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            reason: "empty path segment; write levels as PORTARIUM_ST2_ST2__BASE_URL".into(),
        });
    }
    Ok(path)
}

fn parse_scalar(raw: &str) -> Value {
    match serde_norway::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        Ok(Value::Null) if raw.trim().is_empty() => Value::String(String::new()),
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path
        .split_last()
        .expect("env_path never returns an empty path");
    let mut node = tree;
    for (depth, key) in parents.iter().enumerate() {
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| format!("{} is not a section", path[..depth].join(".")))?;
        node = map
            .entry(Value::String(key.clone()))
            .or_insert_with(|| Value::Mapping(Default::default()));
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
    }
    let map = node
        .as_mapping_mut()
        .ok_or_else(|| format!("{} is not a section", parents.join(".")))?;
    map.insert(Value::String(last.clone()), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml(
            yaml,
            "test.yaml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const MINIMAL: &str = "st2:\n  base_url: http://127.0.0.1:9000\n  api_key: k\n";

    #[test]
    fn minimal_config_gets_defaults_and_endpoints() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.st2.request_timeout, std::time::Duration::from_secs(10));
        let e = c.st2.endpoints().unwrap();
        assert_eq!(e.api.as_str(), "http://127.0.0.1:9000/api/v1");
        assert_eq!(e.auth.as_str(), "http://127.0.0.1:9000/auth/v1");
        assert_eq!(e.stream.as_str(), "http://127.0.0.1:9000/stream/v1");
    }

    #[test]
    fn per_service_urls_override_base_and_get_a_version() {
        let c = load(
            "st2:\n  api_url: http://h:9101\n  stream_url: http://h:9102/v1/\n  auth_url: http://h:9100\n  username: u\n  password: p\n",
            &[],
        )
        .unwrap();
        let e = c.st2.endpoints().unwrap();
        assert_eq!(e.api.as_str(), "http://h:9101/v1");
        assert_eq!(e.stream.as_str(), "http://h:9102/v1");
        assert_eq!(e.auth.as_str(), "http://h:9100/v1");
    }

    #[test]
    fn env_overrides_nested_fields_with_types() {
        let c = load(
            MINIMAL,
            &[
                ("PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES", "5"),
                ("PORTARIUM_ST2_LISTEN", "127.0.0.1:9999"),
                ("PORTARIUM_ST2_CONFIG", "ignored.yaml"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.st2.retry.max_retries, 5);
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn env_alone_can_configure_everything() {
        let c = load(
            "",
            &[
                ("PORTARIUM_ST2_ST2__BASE_URL", "https://st2.example"),
                ("PORTARIUM_ST2_ST2__API_KEY", "abc"),
            ],
        )
        .unwrap();
        assert_eq!(c.st2.api_key.unwrap().expose(), "abc");
    }

    #[test]
    fn wrong_type_names_the_field_and_the_variable() {
        let err = load(
            MINIMAL,
            &[("PORTARIUM_ST2_ST2__REQUEST_TIMEOUT_MS", "fast")],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("st2.request_timeout_ms:"), "{msg}");
        assert!(
            msg.contains("PORTARIUM_ST2_ST2__REQUEST_TIMEOUT_MS"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        let err = load(
            "st2:\n  base_url: http://h\n  api_key: k\n  tmeout: 3\n",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tmeout"), "{msg}");
        assert!(msg.starts_with("st2"), "{msg}");
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let err = load(
            "st2:\n  base_url: ftp://h\n  api_key: k\n  username: u\n  request_timeout: 0s\n  max_concurrency: 0\n  retry: {backoff: {initial: 5s, max: 100ms}}\n",
            &[],
        )
        .unwrap_err();
        let ConfigError::Invalid(errors) = err else {
            panic!("expected Invalid, got {err}")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "st2.base_url",
            "st2.username",
            "st2.request_timeout",
            "st2.max_concurrency",
            "st2.retry.backoff.initial",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn missing_credentials_and_urls_are_named() {
        let err = load("st2:\n  api_url: http://h:9101\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("st2.api_key: no st2 credentials"), "{err}");
        assert!(err.contains("st2.stream_url: required"), "{err}");
        let err = load("st2:\n  base_url: http://h\n  username: u\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("st2.password: required with st2.username"),
            "{err}"
        );
    }

    #[test]
    fn credentials_in_urls_are_refused() {
        let err = load("st2:\n  base_url: http://u:p@h\n  api_key: k\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("st2.base_url: must not contain credentials"),
            "{err}"
        );
    }

    #[test]
    fn unresolvable_secret_names_field_and_variable() {
        let err = load(
            "st2:\n  base_url: http://h\n  api_key: env:PST2_CONFIG_TEST_UNSET\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("st2.api_key:"), "{err}");
        assert!(err.contains("PST2_CONFIG_TEST_UNSET"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_names_the_file() {
        let err = load("st2: [unclosed", &[]).unwrap_err().to_string();
        assert!(err.contains("test.yaml is not valid YAML"), "{err}");
    }

    #[test]
    fn documented_example_loads_as_written() {
        let c = load(EXAMPLE, &[("ST2_API_KEY_UNUSED", "x")]);
        // The example reads its key from env:ST2_API_KEY, so it must fail only on that.
        let err = c.unwrap_err().to_string();
        assert!(
            err.starts_with("st2.api_key:") && err.contains("ST2_API_KEY"),
            "{err}"
        );
        let with_key = EXAMPLE.replace("env:ST2_API_KEY", "literal-key");
        let c = load(&with_key, &[]).unwrap();
        assert_eq!(
            c.st2.endpoints().unwrap().api.as_str(),
            "https://st2.example.com/api/v1"
        );
        assert_eq!(
            c.st2.retry.max_retries,
            st2_client::RetryConfig::default().max_retries
        );
        assert_eq!(c.st2.max_concurrency, 32);
    }

    #[test]
    fn tenants_and_dispatch_rules_name_the_entry() {
        let c = load(
            "st2: {base_url: 'http://h', api_key: k}\ntenants:\n  - {id: a, api_token: ta}\n  - {id: b, api_token: tb, st2: {api_key: kb}}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.tenants.len(), 2);
        assert_eq!(c.dispatch.default_wait_ms, 8_000);
        let err = load(
            "st2: {base_url: 'http://h', api_key: k}\ntenants:\n  - {id: a, api_token: ta}\n  - {id: a, api_token: tb, st2: {username: u}}\ndispatch: {default_wait_ms: 900000}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for want in [
            "tenants[1].id: a is listed twice",
            "tenants[1].st2: password is required",
            "dispatch.default_wait_ms",
        ] {
            assert!(err.contains(want), "{want} missing: {err}");
        }
    }

    #[test]
    fn renamed_fields_are_refused_naming_their_replacement_and_ms_fields_still_read() {
        let err = load(
            "st2:\n  base_url: http://h\n  api_key: k\n  token_ttl_secs: 60\n  stream: {initial_backoff_ms: 5}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for want in [
            "st2.token_ttl_secs: this field was renamed; write st2.token_ttl",
            "st2.stream.initial_backoff_ms: this field was renamed; write st2.stream.backoff.initial",
        ] {
            assert!(err.contains(want), "{want} missing: {err}");
        }
        let c = load(
            "st2:\n  base_url: http://h\n  api_key: k\n  request_timeout_ms: 2500\n  stream: {silence_timeout: 90s}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.st2.request_timeout,
            std::time::Duration::from_millis(2_500)
        );
        assert_eq!(
            c.st2.stream.silence_timeout,
            std::time::Duration::from_secs(90)
        );
    }

    #[test]
    fn token_renewal_window_must_fit_inside_ttl() {
        let err = load(
            "st2:\n  base_url: http://h\n  username: u\n  password: p\n  token_ttl: 60s\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("st2.token_renew_before"), "{err}");
    }
}
