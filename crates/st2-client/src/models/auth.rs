//! `POST /auth/v1/tokens` answers.

use std::fmt;

use serde::Deserialize;
use time::OffsetDateTime;

use super::JsonObject;
use crate::secret::{REDACTED, Secret};

/// A token st2auth issued. `Debug` never shows the token; it is not `Serialize`, so it cannot
/// be written out by accident.
#[derive(Clone, Deserialize)]
pub struct Token {
    /// The user the token belongs to.
    pub user: String,
    /// The token itself.
    #[serde(deserialize_with = "secret")]
    pub token: Secret,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expiry: OffsetDateTime,
    /// Token id.
    #[serde(default)]
    pub id: Option<String>,
    /// Whether it is a service token.
    #[serde(default)]
    pub service: bool,
    /// Everything else (metadata).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Wraps the value as issued; `Secret`'s own `Deserialize` would treat `env:`/`file:` prefixes
/// as references, which a token never is.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::from_value)
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("user", &self.user)
            .field("token", &REDACTED)
            .field("expiry", &self.expiry)
            .field("id", &self.id)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}
