//! Portarium events in: the declared classes, the checks an event passes before it reaches
//! st2, and the redelivery filter (Portarium's outbox delivers at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cloudevent::{CloudEvent, CloudEventError};
use super::config::{EventClass, InboundConfig};
use st2_client::{St2Client, St2Error};

/// Why an inbound event was not passed to st2; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The body is not a CloudEvent in JSON.
    #[error("body is not a CloudEvent in structured JSON mode: {0}")]
    Malformed(String),
    /// The event breaks CloudEvents or Portarium rules.
    #[error("invalid CloudEvent: {0}")]
    Invalid(#[from] CloudEventError),
    /// The event names another tenant than the caller's token.
    #[error(
        "event tenantid {event:?} is not the caller's tenant {caller:?}; send it with that tenant's token"
    )]
    WrongTenant {
        /// `tenantid` of the event.
        event: String,
        /// Tenant of the bearer token.
        caller: String,
    },
    /// No class declares this type.
    #[error("event type {event_type:?} is not a declared event class; declared: {}", if declared.is_empty() { "none (configure events.inbound.classes)".to_string() } else { declared.join(", ") })]
    Undeclared {
        /// `type` of the event.
        event_type: String,
        /// Every declared type.
        declared: Vec<String>,
    },
    /// The body is over the class's (or the global) size limit.
    #[error(
        "event is {size} bytes, over the {limit}-byte limit for {event_type}; send less data or raise the class's max_bytes"
    )]
    TooLarge {
        /// Body size.
        size: usize,
        /// Limit applied.
        limit: usize,
        /// `type` of the event.
        event_type: String,
    },
    /// `data` does not fit the class's schema.
    #[error("data does not match the schema of {event_type}: {}", problems.join("; "))]
    Schema {
        /// `type` of the event.
        event_type: String,
        /// Each violation, with its path.
        problems: Vec<String>,
    },
    /// The event is one this adapter published (its `source`); taking it back could loop.
    #[error(
        "event {id} has this adapter's own source {source_name:?}; lifecycle events are not taken back in (docs/events.md)"
    )]
    OwnEvent {
        /// Event id.
        id: String,
        /// `events.lifecycle.source`.
        source_name: String,
    },
    /// The id was taken within the dedupe window for an event that said something else.
    #[error(
        "event id {id:?} was already taken with different content; a redelivery must repeat the event unchanged, and a new event needs a new id"
    )]
    Reused {
        /// Event id.
        id: String,
    },
    /// st2 refused or could not take the trigger.
    #[error("st2 did not accept the trigger for event {id}: {source}")]
    St2 {
        /// Event id (not remembered, so a redelivery tries again).
        id: String,
        /// st2's error.
        #[source]
        source: St2Error,
    },
}

/// A trigger type an inbound class fires is missing from st2 and could not be created.
#[derive(Debug, thiserror::Error)]
#[error(
    "st2 has no trigger type {reference} and the adapter could not create it ({source}); create it (`st2 trigger create` or POST /api/v1/triggertypes with pack and name) or let the adapter's st2 user create it (with RBAC on, an admin)"
)]
pub struct TriggerTypeError {
    /// The trigger type ref (`pack.name`).
    pub reference: String,
    /// Why st2 did not create it.
    #[source]
    pub source: St2Error,
}

/// Makes sure every trigger type an inbound class fires exists in st2, before events arrive:
/// a stock st2 ships none of them, and its `st2` webhook refuses a type it does not know.
/// Idempotent: each type is looked up and created only when missing.
pub async fn register_trigger_types(
    client: &St2Client,
    classes: &[EventClass],
) -> Result<(), TriggerTypeError> {
    let mut done = std::collections::HashSet::new();
    for class in classes {
        let Some(reference) = class.trigger.as_deref() else {
            continue;
        };
        if !done.insert(reference) {
            continue;
        }
        let description = format!("Portarium events of type {}", class.event_type);
        client
            .trigger_types()
            .ensure(reference, &description)
            .await
            .map_err(|source| TriggerTypeError {
                reference: reference.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// What became of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Posted to st2 now.
    Fired {
        /// `trigger:<ref>` or `webhook:<name>`.
        target: String,
    },
    /// Seen within the dedupe window; st2 was not called again.
    Duplicate,
}

/// SHA-256 of something remembered: every entry has the same size, however long the event
/// id, so `dedupe_max_ids` bounds the memory in bytes (about 150 bytes an entry).
type Digest = [u8; 32];

/// Event ids seen recently, bounded by age and count: the digest of (tenant, id) and the
/// digest of what the event said, to tell a redelivery from a different event reusing the id.
struct Seen {
    ids: HashMap<Digest, (Instant, Digest)>,
    order: VecDeque<(Instant, Digest)>,
    window: Duration,
    max: usize,
}

/// Whether an event was seen before, and with what.
enum Memory {
    /// First time within the window; now remembered.
    New,
    /// The same event again (a redelivery, or one in flight).
    Same,
    /// The same id with other content.
    Different,
}

/// The digest of (tenant, id), each part length-prefixed so no two pairs share an encoding.
fn id_digest(tenant: &str, id: &str) -> Digest {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    for part in [tenant, id] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// The digest of what an event says (every attribute and its data, as parsed, so a
/// re-serialised redelivery still matches).
fn content_digest(event: &CloudEvent) -> Digest {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(serde_json::to_vec(event).unwrap_or_default()).into()
}

impl Seen {
    fn evict(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front() {
            if now.duration_since(*at) < self.window && self.order.len() <= self.max {
                break;
            }
            if self.ids.get(id).map(|(when, _)| when) == Some(at) {
                self.ids.remove(id);
            }
            self.order.pop_front();
        }
    }
}

/// An inbound body, parsed once for every check that follows (the NATS source reads its
/// `tenantid` to pick the tenant before [`Inbound::accept`] checks the rest).
#[derive(Debug)]
pub struct Received {
    event: CloudEvent,
    /// Bytes of the body as sent, for the class's size limit.
    size: usize,
}

impl Received {
    /// `body` read as a CloudEvent in structured JSON mode (not yet validated).
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let event = serde_json::from_slice(body).map_err(|e| Malformed(e.to_string()))?;
        Ok(Self {
            event,
            size: body.len(),
        })
    }

    /// The event's `tenantid`, as sent.
    pub fn tenantid(&self) -> &str {
        &self.event.tenantid
    }
}

/// Why a body is no CloudEvent in structured JSON mode; `?` makes it
/// [`InboundError::Malformed`].
#[derive(Debug)]
pub struct Malformed(String);

impl From<Malformed> for InboundError {
    fn from(Malformed(why): Malformed) -> Self {
        InboundError::Malformed(why)
    }
}

/// The declared classes and the dedupe memory, shared by every request.
#[derive(Clone)]
pub struct Inbound {
    config: Arc<InboundConfig>,
    own_source: Arc<str>,
    classes: Arc<HashMap<String, EventClass>>,
    seen: Arc<Mutex<Seen>>,
}

impl Inbound {
    /// Built from `events.inbound` (already validated); events from `own_source` (the
    /// lifecycle events' source) are refused.
    pub fn new(config: &InboundConfig, own_source: &str) -> Self {
        let classes = config
            .classes
            .iter()
            .map(|c| (c.event_type.clone(), c.clone()))
            .collect();
        Self {
            seen: Arc::new(Mutex::new(Seen {
                ids: HashMap::new(),
                order: VecDeque::new(),
                window: Duration::from_millis(config.dedupe_window_ms),
                max: config.dedupe_max_ids,
            })),
            config: Arc::new(config.clone()),
            own_source: own_source.into(),
            classes: Arc::new(classes),
        }
    }

    /// Largest body any class accepts; the transport limit.
    pub fn max_body_bytes(&self) -> usize {
        self.classes
            .values()
            .filter_map(|c| c.max_bytes)
            .chain([self.config.max_bytes])
            .max()
            .unwrap_or(self.config.max_bytes)
    }

    /// Checks `received` from `tenant` and, unless it is a redelivery, fires its st2 trigger.
    /// Nothing reaches st2 unless every check passes.
    pub async fn accept(
        &self,
        tenant: &str,
        received: Received,
        st2: &St2Client,
    ) -> Result<(CloudEvent, Outcome), InboundError> {
        let Received { event, size } = received;
        event.validate()?;
        if event.source == *self.own_source {
            return Err(InboundError::OwnEvent {
                id: event.id,
                source_name: event.source,
            });
        }
        if event.tenantid != tenant {
            return Err(InboundError::WrongTenant {
                event: event.tenantid,
                caller: tenant.to_string(),
            });
        }
        let Some(class) = self.classes.get(&event.event_type) else {
            let mut declared: Vec<String> = self.classes.keys().cloned().collect();
            declared.sort();
            return Err(InboundError::Undeclared {
                event_type: event.event_type,
                declared,
            });
        };
        let limit = class.max_bytes.unwrap_or(self.config.max_bytes);
        if size > limit {
            return Err(InboundError::TooLarge {
                size,
                limit,
                event_type: event.event_type,
            });
        }
        if let Some(schema) = &class.schema {
            let problems = schema.violations(event.data.as_ref().unwrap_or(&Value::Null));
            if !problems.is_empty() {
                return Err(InboundError::Schema {
                    event_type: event.event_type,
                    problems,
                });
            }
        }
        let key = id_digest(tenant, &event.id);
        match self.remember(key, content_digest(&event)) {
            Memory::New => {}
            Memory::Same => return Ok((event, Outcome::Duplicate)),
            Memory::Different => return Err(InboundError::Reused { id: event.id }),
        }
        let fired = fire(class, &event, st2).await;
        match fired {
            Ok(target) => Ok((event, Outcome::Fired { target })),
            Err(source) => {
                self.forget(&key);
                Err(InboundError::St2 {
                    id: event.id,
                    source,
                })
            }
        }
    }

    /// Records `key` with its `content`, unless it is already there.
    fn remember(&self, key: Digest, content: Digest) -> Memory {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        seen.evict(now);
        if let Some((_, held)) = seen.ids.get(&key) {
            return if *held == content {
                Memory::Same
            } else {
                Memory::Different
            };
        }
        seen.ids.insert(key, (now, content));
        seen.order.push_back((now, key));
        seen.evict(now);
        Memory::New
    }

    /// Drops `key` after st2 failed, so Portarium's redelivery gets another chance.
    fn forget(&self, key: &Digest) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.ids.remove(key);
    }
}

/// Posts the whole event as the trigger payload, so rules see `trigger.data.*`,
/// `trigger.tenantid`, `trigger.correlationid`, `trigger.runid`...; the event id is the st2
/// trace tag, linking the trigger instance and the executions its rules start.
async fn fire(class: &EventClass, event: &CloudEvent, st2: &St2Client) -> Result<String, St2Error> {
    let payload = serde_json::to_value(event).unwrap_or(Value::Null);
    let tag = format!("portarium-event-{}", event.id);
    if let Some(trigger) = &class.trigger {
        st2.webhooks()
            .trigger(trigger, &payload, Some(&tag))
            .await?;
        return Ok(format!("trigger:{trigger}"));
    }
    // Config validation guarantees a webhook when there is no trigger.
    let hook = class.webhook.as_deref().unwrap_or_default();
    st2.webhooks().post(hook, &payload, Some(&tag)).await?;
    Ok(format!("webhook:{hook}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> Inbound {
        Inbound::new(
            &InboundConfig::default(),
            "portarium.execution-plane.stackstorm",
        )
    }

    #[test]
    fn the_id_digest_tells_every_tenant_and_id_pair_apart() {
        // Joined with a separator these would collide; length-prefixed they cannot.
        assert_ne!(id_digest("acme", "prod\0k1"), id_digest("acme\0prod", "k1"));
        assert_ne!(id_digest("a", "bc"), id_digest("ab", "c"));
        assert_eq!(id_digest("acme", "e1"), id_digest("acme", "e1"));
    }

    #[test]
    fn the_same_id_is_a_duplicate_only_with_the_same_content() {
        let inbound = inbound();
        let (a, b) = (id_digest("t1", "e1"), id_digest("t2", "e1"));
        let (one, other) = ([1u8; 32], [2u8; 32]);
        assert!(matches!(inbound.remember(a, one), Memory::New));
        assert!(matches!(inbound.remember(a, one), Memory::Same));
        assert!(matches!(inbound.remember(a, other), Memory::Different));
        assert!(
            matches!(inbound.remember(b, other), Memory::New),
            "another tenant's id is its own"
        );
        inbound.forget(&a);
        assert!(matches!(inbound.remember(a, other), Memory::New));
    }
}
