//! The in-process cache of hot links, so most redirects never reach the database.
//!
//! Entries live at most `ttl`: with several instances, that bounds how long a link deleted
//! through one instance can still redirect through another.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use axum::http::HeaderValue;
use compact_str::CompactString;
use quanta::Instant;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::link::Destination;

/// Each further this many bytes of a link's URL count as one more link against the cache's
/// size.
const BYTES_PER_LINK: usize = 256;

/// Weighs a cached link by the length of its URL, so that the cache's memory is bounded by
/// its size whatever its links' URLs: one link of up to [`BYTES_PER_LINK`] bytes weighs 1,
/// one of the longest accepted (2,048 bytes) 9. Counted in links alone, a cache full of the
/// longest URLs held seven times the memory of one full of typical ones (about 300 bytes a
/// link, entry and URL together): under uniform traffic over 100,000 links of 2,048-byte
/// URLs, the service's peak RSS was 242 MiB, against 92–95 MiB weighed.
#[derive(Debug, Clone, Copy)]
struct ByLength;

impl Weighter<CompactString, (Instant, Target)> for ByLength {
    fn weight(&self, _code: &CompactString, (_, target): &(Instant, Target)) -> u64 {
        let bytes = match target {
            Target::Redirect(redirect) => redirect.location().len(),
            Target::Gone => 0,
        };
        1 + (bytes / BYTES_PER_LINK) as u64
    }
}

/// What a code resolves to, ready to answer with.
#[derive(Debug, Clone)]
pub enum Target {
    /// Redirect there.
    Redirect(Arc<Redirect>),
    /// The link was deleted or disabled.
    Gone,
}

/// A link that redirects, as the redirect path needs it: the `Location` header value, built
/// once when the link was loaded, and the link's clicks not yet written.
///
/// The clicks live here, next to what a cache hit reads anyway, so counting one is an atomic
/// add on memory already at hand rather than a second lookup of the code in a locked map (see
/// [`crate::clicks`]). It fits one 64-byte cache line, with the `Arc`'s counts: a hit reads
/// this line for every redirect, and a cache of small objects keeps more of them in the CPU's
/// caches. So it holds no copy of its code (the cache's key, and the list of clicked links,
/// have one), and its count is 32 bits, ample for the clicks of one flush interval.
#[derive(Debug)]
pub struct Redirect {
    location: HeaderValue,
    /// Clicks counted since [`crate::clicks::ClickCounter`] last took them.
    pub(crate) unwritten_clicks: AtomicU32,
}

// With the `Arc`'s two counts, one cache line.
const _: () = assert!(std::mem::size_of::<Redirect>() + 2 * std::mem::size_of::<usize>() <= 64);

impl Redirect {
    /// The redirect to `location`, with no clicks counted.
    pub fn new(location: HeaderValue) -> Self {
        Self {
            location,
            unwritten_clicks: AtomicU32::new(0),
        }
    }

    /// Where the link leads, as a header value.
    pub fn location(&self) -> &HeaderValue {
        &self.location
    }
}

impl Target {
    /// The answer for the link `code` that leads to `destination`.
    pub fn new(code: &str, destination: Destination) -> Self {
        if destination.disabled {
            return Self::Gone;
        }
        // Stored URLs are normalised ASCII, so this only fails on a hand-edited database.
        match HeaderValue::try_from(destination.url) {
            Ok(location) => Self::Redirect(Arc::new(Redirect::new(location))),
            Err(_) => {
                tracing::error!(%code, "stored URL is not a valid header value");
                Self::Gone
            }
        }
    }
}

/// What the cache knows about a code.
#[derive(Debug)]
pub enum Lookup {
    /// Its target.
    Hit(Target),
    /// It was found missing a moment ago.
    Missing,
    /// Nothing: ask the store.
    Unknown,
}

/// A bounded cache from code to [`Target`], plus a short-lived memory of codes found missing;
/// a no-op when its size is 0.
///
/// `quick_cache` (sharded, read-locked, S3-FIFO eviction) keeps a hit to a hash, a shared lock
/// and a clone; expiry is checked on read against the time each entry was stored, so no
/// background task runs and an expired entry is simply replaced on its next miss. That time
/// is `quanta`'s: read from the CPU's counter, cheaper than the OS clock on every hit, and 8
/// bytes in the entry instead of 16.
pub struct LinkCache(Option<Caches>);

struct Caches {
    /// Keyed by `CompactString`: a code is stored inline in the entry (up to 24 bytes), so a
    /// hit compares it without following a pointer to a string elsewhere in memory.
    links: Cache<CompactString, (Instant, Target), ByLength>,
    ttl: Duration,
    /// Codes found missing, with the time they were (`None` when negative caching is off).
    missing: Option<(Cache<CompactString, Instant>, Duration)>,
}

impl LinkCache {
    /// A cache of at most `size` links (weighed by `ByLength`), each trusted for `ttl`, and
    /// of at most `size` missing codes, each remembered for `negative_ttl` (zero: not
    /// remembered).
    pub fn new(size: u64, ttl: Duration, negative_ttl: Duration) -> Self {
        let capacity = usize::try_from(size).unwrap_or(usize::MAX);
        Self((size > 0).then(|| Caches {
            links: Cache::with_weighter(capacity, size, ByLength),
            ttl,
            missing: (!negative_ttl.is_zero()).then(|| (Cache::new(capacity), negative_ttl)),
        }))
    }

    /// What is known about `code`.
    pub fn get(&self, code: &str) -> Lookup {
        let Some(caches) = &self.0 else {
            return Lookup::Unknown;
        };
        let fresh = |stored: Instant, ttl: Duration| stored.elapsed() < ttl;
        let counters = crate::metrics::hot();
        let (lookup, counter) = match caches.links.get(code) {
            Some((stored, target)) if fresh(stored, caches.ttl) => {
                (Lookup::Hit(target), &counters.cache_hit)
            }
            _ => match &caches.missing {
                Some((missing, ttl)) if missing.get(code).is_some_and(|t| fresh(t, *ttl)) => {
                    (Lookup::Missing, &counters.cache_negative_hit)
                }
                _ => (Lookup::Unknown, &counters.cache_miss),
            },
        };
        counter.increment(1);
        lookup
    }

    /// Remembers the target of `code`.
    pub fn insert(&self, code: &str, target: Target) {
        if let Some(caches) = &self.0 {
            caches.links.insert(code.into(), (Instant::now(), target));
        }
    }

    /// Remembers, for the negative TTL, that no link has this code.
    pub fn remember_missing(&self, code: &str) {
        if let Some((missing, _)) = self.0.as_ref().and_then(|c| c.missing.as_ref()) {
            missing.insert(code.into(), Instant::now());
        }
    }

    /// Forgets everything (changes may have been missed).
    pub fn invalidate_all(&self) {
        if let Some(caches) = &self.0 {
            caches.links.clear();
            if let Some((missing, _)) = &caches.missing {
                missing.clear();
            }
        }
    }

    /// Forgets `code` (it was created, changed or removed, here or on another instance).
    pub fn invalidate(&self, code: &str) {
        if let Some(caches) = &self.0 {
            caches.links.remove(code);
            if let Some((missing, _)) = &caches.missing {
                missing.remove(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(url: &str) -> Target {
        Target::Redirect(Arc::new(Redirect::new(HeaderValue::try_from(url).unwrap())))
    }

    /// Links with the longest URLs weigh 9 each, so a cache holds a ninth as many of them.
    #[test]
    fn long_urls_count_as_several_links() {
        let long = format!("https://example.com/{}", "a".repeat(2048 - 20));
        let weigh = |target| ByLength.weight(&"code".into(), &(Instant::now(), target));
        assert_eq!(weigh(redirect("https://example.com/")), 1);
        assert_eq!(weigh(redirect(&long)), 9);
        assert_eq!(weigh(Target::Gone), 1);

        let size = 1_000;
        let held = |url: &str| {
            let cache = LinkCache::new(size, Duration::from_secs(60), Duration::ZERO);
            for i in 0..size {
                cache.insert(&format!("c{i}"), redirect(url));
            }
            let links = &cache.0.as_ref().unwrap().links;
            // Each shard's capacity is rounded up: together a few more than `size`.
            assert!(links.weight() <= links.capacity() && links.capacity() < size + 64);
            links.len() as u64
        };
        let (short, long) = (held("https://example.com/"), held(&long));
        assert!(long <= (size + 64) / 9, "{long}");
        assert!(short > 4 * long, "{short} against {long}");
    }
}
