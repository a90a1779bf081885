//! The in-process cache of hot links, so most redirects never reach the database.
//!
//! Entries live at most `ttl`: with several instances, that bounds how long a link deleted
//! through one instance can still redirect through another.

use std::time::Duration;

use axum::http::HeaderValue;
use moka::sync::Cache;

use crate::link::Link;

/// What a code resolves to, ready to answer with.
#[derive(Debug, Clone)]
pub enum Target {
    /// Redirect here (a header value built once, when the link was loaded).
    Redirect(HeaderValue),
    /// The link was deleted or disabled.
    Gone,
}

impl Target {
    /// The answer for a stored link.
    pub fn from_link(link: &Link) -> Self {
        if link.is_disabled() {
            return Self::Gone;
        }
        // Stored URLs are normalised ASCII, so this only fails on a hand-edited database.
        match HeaderValue::from_str(&link.url) {
            Ok(value) => Self::Redirect(value),
            Err(_) => {
                tracing::error!(code = %link.code, "stored URL is not a valid header value");
                Self::Gone
            }
        }
    }
}

/// A bounded cache from code to [`Target`]; a no-op when its size is 0.
pub struct LinkCache(Option<Cache<String, Target>>);

impl LinkCache {
    /// A cache of at most `size` entries, each trusted for `ttl`.
    pub fn new(size: u64, ttl: Duration) -> Self {
        Self((size > 0).then(|| {
            Cache::builder()
                .max_capacity(size)
                .time_to_live(ttl)
                .build()
        }))
    }

    /// The cached target of `code`.
    pub fn get(&self, code: &str) -> Option<Target> {
        let hit = self.0.as_ref()?.get(code);
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("shortener_cache_lookups_total", "result" => result).increment(1);
        hit
    }

    /// Remembers the target of `code`.
    pub fn insert(&self, code: &str, target: Target) {
        if let Some(cache) = &self.0 {
            cache.insert(code.to_owned(), target);
        }
    }

    /// Forgets everything (changes may have been missed).
    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.0 {
            cache.invalidate_all();
        }
    }

    /// Forgets `code` (it was changed here or on another instance).
    pub fn invalidate(&self, code: &str) {
        if let Some(cache) = &self.0 {
            cache.invalidate(code);
        }
    }
}
