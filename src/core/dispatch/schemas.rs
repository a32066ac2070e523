//! Action parameter schemas kept between dispatches, so a dispatch does not read its action's
//! schema from st2 every time. Entries live for a short TTL (a pack upgrade is seen within it)
//! and an action's entry is dropped as soon as st2 refuses parameters the cached schema let
//! through. Bounded in entries and in bytes; the oldest entries go first.

use std::sync::{Arc, Mutex, PoisonError};

use crate::core::config::SchemaCacheConfig;
use st2_basics::{BoundedMap, Bounds};
use st2_client::models::ActionParameters;

/// The parameter schemas of one st2 credential's actions (RBAC may show each credential
/// different actions, so every dispatcher holds its own).
pub struct SchemaCache {
    keeps: bool,
    inner: Mutex<BoundedMap<String, Arc<ActionParameters>>>,
}

impl SchemaCache {
    /// An empty cache bounded by `cfg`; a zero TTL keeps nothing.
    pub fn new(cfg: SchemaCacheConfig) -> Self {
        Self {
            keeps: !cfg.ttl.is_zero(),
            inner: Mutex::new(BoundedMap::new(Bounds {
                max_entries: cfg.max_entries,
                max_bytes: cfg.max_bytes,
                ttl: Some(cfg.ttl),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedMap<String, Arc<ActionParameters>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema of `action` if it was read less than the TTL ago.
    pub fn get(&self, action: &str) -> Option<Arc<ActionParameters>> {
        self.lock().get(action).cloned()
    }

    /// Keeps `schema` (just read from st2) for `action`, evicting the oldest entries until
    /// both bounds hold. A schema larger than the whole byte bound is not kept.
    pub fn put(&self, action: &str, schema: Arc<ActionParameters>) {
        if !self.keeps {
            return;
        }
        // Weighed by its JSON, as st2 sent it, and the key's two copies (map and order).
        let json = serde_json::to_vec(&*schema).map_or(usize::MAX / 2, |v| v.len());
        self.lock()
            .insert(action.to_string(), schema, json + 2 * action.len());
    }

    /// Forgets `action`'s schema: st2 refused parameters it let through, so it is stale.
    pub fn drop_action(&self, action: &str) {
        self.lock().remove(action);
    }

    /// Entries and bytes held now.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.len(), inner.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn schema(params: usize) -> Arc<ActionParameters> {
        let mut p = serde_json::Map::new();
        for i in 0..params {
            p.insert(format!("param_{i}"), json!({"type": "string"}));
        }
        Arc::new(serde_json::from_value(json!({ "parameters": p })).unwrap())
    }

    fn cache(ttl_s: u64, max_entries: usize, max_bytes: usize) -> SchemaCache {
        SchemaCache::new(SchemaCacheConfig {
            ttl: Duration::from_secs(ttl_s),
            max_entries,
            max_bytes,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_lives_for_the_ttl_only() {
        let c = cache(30, 10, 1 << 20);
        c.put("core.local", schema(2));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(c.get("core.local").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.get("core.local").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_entries_go_when_either_bound_is_reached() {
        let c = cache(30, 3, 1 << 20);
        for i in 0..5 {
            c.put(&format!("p.a{i}"), schema(1));
        }
        assert_eq!(c.size().0, 3);
        assert!(c.get("p.a1").is_none() && c.get("p.a2").is_some());

        let one = {
            let probe = cache(30, 100, 1 << 20);
            probe.put("p.a0", schema(20));
            probe.size().1
        };
        let c = cache(30, 100, one * 2 + one / 2);
        for i in 0..4 {
            c.put(&format!("p.a{i}"), schema(20));
        }
        let (entries, bytes) = c.size();
        assert_eq!(entries, 2);
        assert!(bytes <= one * 2 + one / 2);
        assert!(c.get("p.a3").is_some() && c.get("p.a1").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_and_dropping_keep_the_byte_count_right() {
        let c = cache(30, 10, 1 << 20);
        c.put("p.aa", schema(1));
        let small = c.size().1;
        c.put("p.aa", schema(50));
        c.put("p.b0", schema(1));
        c.put("p.aa", schema(1));
        assert_eq!(c.size(), (2, 2 * small));
        // p.aa's older order records must not evict it: p.b0 is older than its last put.
        for i in 1..10 {
            c.put(&format!("p.b{i}"), schema(1));
        }
        assert!(c.get("p.aa").is_some() && c.get("p.b0").is_none());
        c.drop_action("p.aa");
        assert!(c.get("p.aa").is_none());
        assert_eq!(c.size(), (9, 9 * small));
        let huge = cache(30, 10, 64);
        huge.put("p.a", schema(10));
        assert_eq!(huge.size(), (0, 0));
    }
}
