//! The secret values the adapter has seen for each dispatch key, so that an answer, an event
//! or a stream about an execution is scrubbed with the secrets of the request that started it
//! — not only those of whichever request is being answered now.
//!
//! st2 shows secret parameters masked (`********`) unless the caller is an admin and asks with
//! `show_secrets`. Where st2 does show them, they are read from st2 (see
//! [`crate::core::Tenant::secrets_of`]) and the key's entry is marked confirmed; where it does
//! not, the book is what is left: every secret value of every request this process saw under
//! the key. The book is bounded in bytes; the keys booked to longest ago
//! are forgotten first ([`st2_basics::bounded`]'s order).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use st2_basics::{BoundedMap, Bounds};

/// Bytes the book holds by default: some thousands of dispatches' secrets.
pub const DEFAULT_BOOK_BYTES: usize = 4 << 20;

/// Secret values per dispatch key, bounded in bytes.
#[derive(Debug)]
pub struct SecretBook {
    inner: Mutex<BoundedMap<String, Entry>>,
    /// Set once st2 answered `show_secrets` with masked values (RBAC on, no admin): asking
    /// again would only cost a request per answer.
    st2_hides: AtomicBool,
}

#[derive(Debug, Default)]
struct Entry {
    values: Vec<String>,
    /// The execution's own values came from st2, so nothing is missing.
    confirmed: bool,
}

impl Entry {
    /// Its weight in the book: the key's two copies (map and order) and the values.
    fn weight(&self, key: &str) -> usize {
        2 * key.len() + self.values.iter().map(String::len).sum::<usize>()
    }
}

impl Default for SecretBook {
    fn default() -> Self {
        Self::new(DEFAULT_BOOK_BYTES)
    }
}

impl SecretBook {
    /// A book holding at most `max_bytes` of keys and values.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            // The byte bound is the one that matters: an entry costs at least its overhead,
            // so the entry bound follows from it.
            inner: Mutex::new(BoundedMap::new(Bounds {
                max_entries: usize::MAX,
                max_bytes,
                ttl: None,
            })),
            st2_hides: AtomicBool::new(false),
        }
    }

    /// Adds `values` to what is known of `key`; `confirmed` when they are the execution's own,
    /// as st2 showed them. The key becomes the newest of the book.
    pub fn remember(&self, key: &str, values: &[String], confirmed: bool) {
        if values.is_empty() && !confirmed {
            return;
        }
        let mut book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut entry = book.remove(key).unwrap_or_default();
        for v in values {
            if !entry.values.contains(v) {
                entry.values.push(v.clone());
            }
        }
        entry.confirmed |= confirmed;
        let weight = entry.weight(key);
        book.insert(key.to_string(), entry, weight);
    }

    /// The values known for `key`, and whether they are confirmed by st2.
    pub fn recall(&self, key: &str) -> (Vec<String>, bool) {
        let book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        book.get(key)
            .map_or((Vec::new(), false), |e| (e.values.clone(), e.confirmed))
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes()
    }

    /// Whether st2 was seen hiding secrets from this adapter's credentials.
    pub fn st2_hides(&self) -> bool {
        self.st2_hides.load(Ordering::Relaxed)
    }

    /// Notes that st2 answered `show_secrets` with masked values.
    pub fn note_st2_hides(&self) {
        if !self.st2_hides.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "st2 shows secret parameters masked to this adapter's st2 user; answers about \
                 executions are scrubbed with the secret values this process saw for their key"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use st2_basics::bounded::ENTRY_OVERHEAD;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_accumulate_per_key_and_the_oldest_keys_go_first_past_the_byte_bound() {
        let book = SecretBook::new(3 * (ENTRY_OVERHEAD + 8));
        book.remember("k1", &values(&["aaaa"]), false);
        book.remember("k1", &values(&["bbbb", "aaaa"]), false);
        assert_eq!(book.recall("k1"), (values(&["aaaa", "bbbb"]), false));
        book.remember("k2", &values(&["cccc"]), true);
        assert_eq!(book.recall("k2"), (values(&["cccc"]), true));
        book.remember("k3", &values(&["dddd"]), false);
        book.remember("k4", &values(&["eeee"]), false);
        assert_eq!(
            book.recall("k1"),
            (Vec::new(), false),
            "the oldest went first"
        );
        assert!(book.bytes() <= 3 * (ENTRY_OVERHEAD + 8), "{}", book.bytes());
        assert_eq!(book.recall("k4").0, values(&["eeee"]));
    }
}
