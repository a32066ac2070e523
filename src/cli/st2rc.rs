//! The st2 settings an operator already has for the `st2` CLI: st2client's environment
//! variables and its `~/.st2/config`, read in st2client's order (st2client/base.py and
//! client.py in StackStorm/st2), so `portarium-st2 run` and `execution ...` work without a
//! config file of their own.
//!
//! st2client gives each endpoint, per setting: a command-line flag, then the config file,
//! then the `ST2_*` variable, then its default (`http://127.0.0.1`, st2api on 9101, st2auth on
//! 9100, st2stream on 9102). Credentials: a token or key in the environment, else the config
//! file's `[credentials]`.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

/// st2client's default `base_url`.
const DEFAULT_BASE_URL: &str = "http://127.0.0.1";

/// Why the st2client settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum St2rcError {
    /// `ST2_CONFIG_FILE` names a file that is not there (st2client refuses it too).
    #[error(
        "st2 CLI config {0} not found (ST2_CONFIG_FILE); fix the path or unset ST2_CONFIG_FILE"
    )]
    Missing(PathBuf),
    /// The file could not be read or parsed.
    #[error(
        "cannot read st2 CLI config {path}: {reason}; fix the file or set ST2_CLI_SKIP_CONFIG=1"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A setting portarium-st2 does not follow st2client on.
    #[error("{setting}: {reason}")]
    Unsupported {
        /// Where it was set (`[general] cacert in ~/.st2/config`, `ST2_CACERT`).
        setting: String,
        /// Why, and what to do instead.
        reason: String,
    },
}

/// Where a value came from: the config file's `[section] key`, or a variable.
struct Found {
    value: String,
    from: String,
}

/// The st2client settings visible to this process.
pub struct St2rc<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    ini: Option<(configparser::ini::Ini, PathBuf)>,
}

impl<'a> St2rc<'a> {
    /// Reads st2client's config file (`ST2_CONFIG_FILE`, else `<home>/.st2/config`, unless
    /// `ST2_CLI_SKIP_CONFIG` is set to a non-zero number) with Python ConfigParser's rules.
    pub fn load(
        env: &'a dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Self, St2rcError> {
        let skip = env("ST2_CLI_SKIP_CONFIG")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| v != 0);
        let named = env("ST2_CONFIG_FILE").filter(|p| !p.is_empty());
        let path = match (&named, home) {
            (Some(p), _) => Some(PathBuf::from(p)),
            (None, Some(home)) => Some(home.join(".st2").join("config")),
            (None, None) => None,
        };
        let ini = match path {
            Some(path) if !skip => {
                if !path.exists() {
                    if named.is_some() {
                        return Err(St2rcError::Missing(path));
                    }
                    None
                } else {
                    Some((parse_ini(&path)?, path))
                }
            }
            _ => None,
        };
        Ok(Self { env, ini })
    }

    /// `[section] key` of the config file.
    fn file(&self, section: &str, key: &str) -> Option<Found> {
        self.ini.as_ref().and_then(|(ini, path)| {
            let value = ini.get(section, key).filter(|v| !v.trim().is_empty())?;
            Some(Found {
                value,
                from: format!("[{section}] {key} in {}", path.display()),
            })
        })
    }

    /// `[section] key` of the config file, then the variable `var`.
    fn pick(&self, section: &str, key: &str, var: &str) -> Option<Found> {
        self.file(section, key).or_else(|| {
            (self.env)(var)
                .filter(|v| !v.trim().is_empty())
                .map(|value| Found {
                    value,
                    from: var.to_string(),
                })
        })
    }

    /// The `st2:` config section these settings amount to; `None` when no st2client setting
    /// is present at all (no file, no variable), so the adapter's own config rules apply.
    pub fn st2_section(&self) -> Result<Option<Value>, St2rcError> {
        let base = self.pick("general", "base_url", "ST2_BASE_URL");
        let version = self.pick("general", "api_version", "ST2_API_VERSION");
        let api = self.pick("api", "url", "ST2_API_URL");
        let auth = self.pick("auth", "url", "ST2_AUTH_URL");
        let stream = self.pick("stream", "url", "ST2_STREAM_URL");
        let cacert = self.pick("general", "cacert", "ST2_CACERT");
        let token = (self.env)("ST2_AUTH_TOKEN").filter(|v| !v.is_empty());
        let api_key = self.pick("credentials", "api_key", "ST2_API_KEY");
        let username = self.file("credentials", "username");
        let password = self.file("credentials", "password");
        if let Some(basic) = self.file("credentials", "basic_auth") {
            return Err(St2rcError::Unsupported {
                setting: basic.from,
                reason: "HTTP basic auth in front of st2 is not supported; remove it and use an API key or token".into(),
            });
        }
        let anything = self.ini.is_some()
            || [&base, &api, &auth, &stream, &cacert, &api_key]
                .iter()
                .any(|f| f.is_some())
            || token.is_some();
        if !anything {
            return Ok(None);
        }
        let mut st2 = Mapping::new();
        let mut put = |key: &str, value: String| {
            st2.insert(key.into(), value.into());
        };
        let base_url = base.map_or_else(|| DEFAULT_BASE_URL.to_string(), |b| b.value);
        let version = version.map_or_else(|| "v1".to_string(), |v| v.value);
        // st2client puts each service on its own port of the base host; a base that already
        // names a port cannot take another, so it is read as the adapter's base_url (one
        // address serving /api, /auth and /stream, as st2's nginx does).
        let has_port = url::Url::parse(&base_url).is_ok_and(|u| u.port().is_some());
        let derive = |port: u16, path: &str| format!("{base_url}:{port}{path}");
        if has_port && api.is_none() && auth.is_none() && stream.is_none() {
            put("base_url", base_url.clone());
        } else {
            put(
                "api_url",
                api.map_or_else(|| derive(9101, &format!("/{version}")), |f| f.value),
            );
            put(
                "auth_url",
                auth.map_or_else(|| derive(9100, ""), |f| f.value),
            );
            put(
                "stream_url",
                stream.map_or_else(|| derive(9102, &format!("/{version}")), |f| f.value),
            );
        }
        if let Some(ca) = cacert {
            match ca.value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "y" | "yes" => {}
                "false" | "0" | "f" | "no" => {
                    return Err(St2rcError::Unsupported {
                        setting: ca.from,
                        reason: "turns TLS verification off, which portarium-st2 never does; give the path of the CA certificate instead".into(),
                    });
                }
                _ => {
                    let mut tls = Mapping::new();
                    tls.insert("ca_file".into(), ca.value.into());
                    st2.insert("tls".into(), Value::Mapping(tls));
                }
            }
        }
        let literal = |f: Found| -> Result<String, St2rcError> {
            // A literal that starts like a secret reference would be read as one.
            if f.value.starts_with("env:") || f.value.starts_with("file:") {
                return Err(St2rcError::Unsupported {
                    setting: f.from,
                    reason: "starts with env: or file:, which portarium-st2 would read as a reference; set it through ST2_API_KEY or ST2_AUTH_TOKEN instead".into(),
                });
            }
            Ok(f.value)
        };
        let mut put = |key: &str, value: String| {
            st2.insert(key.into(), value.into());
        };
        if token.is_some() {
            put("auth_token", "env:ST2_AUTH_TOKEN".into());
        } else if let Some(key) = api_key {
            let value = if key.from == "ST2_API_KEY" {
                "env:ST2_API_KEY".to_string()
            } else {
                literal(key)?
            };
            put("api_key", value);
        } else if let Some(user) = username {
            put("username", user.value);
            if let Some(password) = password {
                put("password", literal(password)?);
            }
        }
        let mut root = Mapping::new();
        root.insert("st2".into(), Value::Mapping(st2));
        Ok(Some(Value::Mapping(root)))
    }
}

/// Python ConfigParser's reading of `path`: `=` or `:`, `#`/`;` comments on their own line
/// only, indented continuation lines, the `[DEFAULT]` section behind every other.
fn parse_ini(path: &Path) -> Result<configparser::ini::Ini, St2rcError> {
    let unreadable = |reason: String| St2rcError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let text = st2_basics::files::read_text(path, st2_basics::files::MAX_TEXT_FILE)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut defaults = configparser::ini::Ini::new().defaults();
    defaults.enable_inline_comments = false;
    defaults.multiline = true;
    defaults.cascade_defaults = true;
    let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
    ini.read(text).map_err(unreadable)?;
    Ok(ini)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn section(
        vars: &[(&str, &str)],
        rc: Option<&str>,
    ) -> Result<Option<serde_json::Value>, St2rcError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(rc) = rc {
            std::fs::create_dir(dir.path().join(".st2")).unwrap();
            std::fs::write(dir.path().join(".st2/config"), rc).unwrap();
        }
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.get(k).cloned();
        let rc = St2rc::load(&env, Some(dir.path()))?;
        Ok(rc
            .st2_section()?
            .map(|v| serde_json::to_value(v).unwrap()["st2"].clone()))
    }

    #[test]
    fn nothing_set_is_none() {
        assert!(section(&[], None).unwrap().is_none());
    }

    #[test]
    fn endpoints_follow_st2clients_defaults_and_order() {
        // Base alone: st2client's per-service ports.
        let s = section(
            &[
                ("ST2_BASE_URL", "https://st2.example"),
                ("ST2_API_KEY", "k"),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s["api_url"], "https://st2.example:9101/v1");
        assert_eq!(s["auth_url"], "https://st2.example:9100");
        assert_eq!(s["stream_url"], "https://st2.example:9102/v1");
        assert_eq!(s["api_key"], "env:ST2_API_KEY");
        // The config file wins over the variable, setting by setting.
        let s = section(
            &[
                ("ST2_API_URL", "https://env/api/v1"),
                ("ST2_AUTH_URL", "https://env/auth/v1"),
            ],
            Some("[api]\nurl = https://file/api/v1\n[credentials]\napi_key: abc # not a comment\n"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s["api_url"], "https://file/api/v1");
        assert_eq!(s["auth_url"], "https://env/auth/v1");
        assert_eq!(s["stream_url"], "http://127.0.0.1:9102/v1");
        assert_eq!(s["api_key"], "abc # not a comment", "no inline comments");
        // A base with a port is one address serving every service.
        let s = section(&[("ST2_BASE_URL", "http://127.0.0.1:8080")], None)
            .unwrap()
            .unwrap();
        assert_eq!(s["base_url"], "http://127.0.0.1:8080");
    }

    #[test]
    fn credentials_token_then_key_then_user() {
        let rc = "[credentials]\nusername = ann\npassword = pw\n";
        let s = section(&[("ST2_AUTH_TOKEN", "t")], Some(rc))
            .unwrap()
            .unwrap();
        assert_eq!(s["auth_token"], "env:ST2_AUTH_TOKEN");
        assert!(s.get("username").is_none());
        let s = section(&[], Some(rc)).unwrap().unwrap();
        assert_eq!(
            (&s["username"], &s["password"]),
            (&"ann".into(), &"pw".into())
        );
        let err = section(&[], Some("[credentials]\napi_key = env:HOME\n")).unwrap_err();
        assert!(err.to_string().contains("[credentials] api_key"), "{err}");
    }

    #[test]
    fn unsupported_settings_and_missing_files_are_named() {
        let err = section(&[("ST2_CACERT", "False")], None).unwrap_err();
        assert!(err.to_string().starts_with("ST2_CACERT: "), "{err}");
        let s = section(&[("ST2_CACERT", "/etc/ca.pem")], None)
            .unwrap()
            .unwrap();
        assert_eq!(s["tls"]["ca_file"], "/etc/ca.pem");
        let err = section(&[("ST2_CONFIG_FILE", "/nonexistent/st2.ini")], None).unwrap_err();
        assert!(matches!(err, St2rcError::Missing(_)), "{err}");
        let skipped = section(
            &[("ST2_CLI_SKIP_CONFIG", "1")],
            Some("[general]\nbase_url=http://x\n"),
        )
        .unwrap();
        assert!(skipped.is_none(), "{skipped:?}");
    }
}
