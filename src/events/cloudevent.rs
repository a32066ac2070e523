//! `PortariumCloudEventV1`: CloudEvents 1.0 in structured JSON mode with Portarium's extension
//! attributes, as Portarium's `createPortariumCloudEvent` builds it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use st2_client::models::JsonObject;

/// Prefix every Portarium event type carries.
pub const TYPE_PREFIX: &str = "com.portarium.";
/// Media type of a structured-mode CloudEvent body.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// One CloudEvent as Portarium sends and expects it; attribute names are CloudEvents' own
/// (lower-case, no separators), so the field names are the wire names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CloudEvent {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Unique per source; receivers dedupe on it.
    pub id: String,
    /// Producer, e.g. `portarium.execution-plane.stackstorm`.
    pub source: String,
    /// `com.portarium.<aggregate>.<EventType>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What it is about, e.g. `runs/<runId>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Media type of `data`; Portarium always sets `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Schema of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// A binary payload instead of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Portarium tenant (workspace); required.
    #[serde(default)]
    pub tenantid: String,
    /// Cross-aggregate correlation token; required.
    #[serde(default)]
    pub correlationid: String,
    /// Run the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runid: Option<String>,
    /// Action step within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actionid: Option<String>,
    /// W3C trace context (CloudEvents distributed-tracing extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Other extension attributes (Portarium's consumers must tolerate unknown ones).
    #[serde(flatten)]
    pub extensions: JsonObject,
}

/// Why an inbound event is not a valid Portarium CloudEvent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudEventError {
    /// `specversion` is not `1.0`.
    #[error("specversion must be \"1.0\", got {0:?}")]
    SpecVersion(String),
    /// A required attribute is empty or missing.
    #[error("attribute `{0}` is required and must not be empty")]
    Missing(&'static str),
    /// `type` lacks the Portarium prefix.
    #[error("type {0:?} is not a Portarium event type; it must start with \"com.portarium.\"")]
    ForeignType(String),
    /// `time` does not parse.
    #[error("time {0:?} is not an RFC 3339 timestamp, e.g. 2026-11-25T08:00:00Z")]
    Time(String),
    /// Both payload forms are present.
    #[error("data and data_base64 are both set; send only one")]
    TwoPayloads,
    /// `datacontenttype` is set to something other than JSON while `data` is JSON.
    #[error("datacontenttype {0:?} is not JSON; send application/json data")]
    ContentType(String),
    /// An id attribute is over its length or holds characters it may not (`core::ids`).
    #[error("attribute {0}")]
    Id(st2_basics::FieldError),
    /// An extension attribute's name breaks CloudEvents' naming rule.
    #[error("extension attribute {0:?} must be lower-case letters and digits only")]
    ExtensionName(String),
}

impl CloudEvent {
    /// Checks what CloudEvents 1.0 and Portarium's parser require of an event.
    pub fn validate(&self) -> Result<(), CloudEventError> {
        if self.specversion != "1.0" {
            return Err(CloudEventError::SpecVersion(self.specversion.clone()));
        }
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.event_type),
            ("tenantid", &self.tenantid),
            ("correlationid", &self.correlationid),
        ] {
            if value.trim().is_empty() {
                return Err(CloudEventError::Missing(name));
            }
        }
        crate::core::ids::EVENT_ID
            .check(&self.id)
            .map_err(CloudEventError::Id)?;
        if !self.event_type.starts_with(TYPE_PREFIX) {
            return Err(CloudEventError::ForeignType(self.event_type.clone()));
        }
        if let Some(t) = &self.time
            && OffsetDateTime::parse(t, &Rfc3339).is_err()
        {
            return Err(CloudEventError::Time(t.clone()));
        }
        if self.data.is_some() && self.data_base64.is_some() {
            return Err(CloudEventError::TwoPayloads);
        }
        if let Some(ct) = &self.datacontenttype
            && self.data.is_some()
            && !is_json(ct)
        {
            return Err(CloudEventError::ContentType(ct.clone()));
        }
        if let Some(bad) = self.extensions.keys().find(|k| {
            k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }) {
            return Err(CloudEventError::ExtensionName(bad.clone()));
        }
        Ok(())
    }

    /// The NATS subject Portarium's publisher uses: `portarium.events.<type without com.portarium.>`.
    pub fn nats_subject(&self, prefix: &str) -> String {
        let short = self
            .event_type
            .strip_prefix(TYPE_PREFIX)
            .unwrap_or(&self.event_type);
        format!("{prefix}.{short}")
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "specversion": "1.0", "id": "e1", "source": "portarium.control-plane",
            "type": "com.portarium.run.RunStarted", "subject": "runs/r1",
            "time": "2026-11-25T08:00:00Z", "datacontenttype": "application/json",
            "data": {"a": 1}, "tenantid": "t1", "correlationid": "c1", "runid": "r1",
            "robotid": "bot-7"
        })
    }

    #[test]
    fn round_trips_the_wire_form_with_unknown_extensions() {
        let ev: CloudEvent = serde_json::from_value(sample()).expect("decodes");
        ev.validate().expect("valid");
        assert_eq!(ev.extensions["robotid"], "bot-7");
        assert_eq!(serde_json::to_value(&ev).expect("encodes"), sample());
        assert_eq!(
            ev.nats_subject("portarium.events"),
            "portarium.events.run.RunStarted"
        );
    }

    #[test]
    fn refuses_what_portarium_would_refuse() {
        let cases = [
            ("specversion", json!("0.3"), "specversion"),
            ("tenantid", json!(""), "tenantid"),
            ("type", json!("org.example.Thing"), "com.portarium."),
            ("time", json!("yesterday"), "RFC 3339"),
            ("data_base64", json!("AA=="), "only one"),
            ("datacontenttype", json!("text/plain"), "not JSON"),
            ("Bad-Name", json!("x"), "lower-case"),
            ("id", json!("e\n1"), "attribute id: has '\\n' at byte 1"),
            ("id", json!("e\u{0}1"), "attribute id: has '\\0' at byte 1"),
            (
                "id",
                json!("e".repeat(257)),
                "attribute id: is 257 bytes long",
            ),
        ];
        for (field, value, expected) in cases {
            let mut v = sample();
            v[field] = value;
            let ev: CloudEvent = serde_json::from_value(v).expect("decodes");
            let err = ev.validate().expect_err(field).to_string();
            assert!(err.contains(expected), "{field}: {err}");
        }
    }
}
