//! Per-client rate limits: creates (form and API) and not-found lookups (code enumeration).
//!
//! Limits are token buckets per client IP (`governor`), refilled evenly over a minute. A client
//! that exhausts its not-found budget is blocked from *all* lookups until it refills, so an
//! enumerator cannot keep telling hits (302) from misses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::Extensions;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use moka::sync::Cache;

use crate::app::AppState;
use crate::error::AppError;

/// Limits in requests per minute per client; 0 turns one off.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Creates per minute per client (form and API, without a key).
    pub create_per_minute: u32,
    /// Lookups of unknown codes per minute per client.
    pub not_found_per_minute: u32,
    /// Proxies in front of the service whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxies: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            create_per_minute: 60,
            not_found_per_minute: 120,
            trusted_proxies: 0,
        }
    }
}

/// The limiters of one instance.
pub struct RateLimits {
    create: Option<DefaultKeyedRateLimiter<IpAddr>>,
    not_found: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Clients over their not-found budget, with when they may look up again.
    blocked: Cache<IpAddr, Instant>,
    /// The latest time until which any client is blocked, in milliseconds since `epoch`:
    /// while it is past, nobody is blocked and a lookup skips the cache above (the common
    /// case, on every redirect).
    blocked_until_ms: AtomicU64,
    epoch: Instant,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(per_minute).map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    /// Limiters for `settings`.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            create: limiter(settings.create_per_minute),
            not_found: limiter(settings.not_found_per_minute),
            blocked: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            blocked_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Takes one create from `ip`'s budget.
    pub fn check_create(&self, ip: IpAddr) -> Result<(), AppError> {
        let Some(limiter) = &self.create else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            metrics::counter!("shortener_rate_limited_total", "limit" => "create").increment(1);
            AppError::RateLimited(retry_after(wait))
        })
    }

    /// Refuses lookups from a client that is over its not-found budget.
    pub fn check_lookup(&self, ip: IpAddr) -> Result<(), AppError> {
        // Before anyone was blocked (always, with the limit off) or once every block is past,
        // nobody is: keep the redirect path free of the lookup, and the first case of a clock
        // read too.
        let blocked_until = self.blocked_until_ms.load(Ordering::Relaxed);
        if blocked_until == 0 || self.millis(Instant::now()) > blocked_until {
            return Ok(());
        }
        match self.blocked.get(&ip) {
            Some(until) if until > Instant::now() => {
                Err(AppError::RateLimited(retry_after(until - Instant::now())))
            }
            _ => Ok(()),
        }
    }

    /// Counts a lookup of an unknown code; over the budget, the client is blocked.
    pub fn record_not_found(&self, ip: IpAddr) -> Result<(), AppError> {
        let Some(limiter) = &self.not_found else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let until = Instant::now() + wait;
            self.blocked.insert(ip, until);
            self.blocked_until_ms
                .fetch_max(self.millis(until) + 1, Ordering::Relaxed);
            metrics::counter!("shortener_rate_limited_total", "limit" => "not_found").increment(1);
            AppError::RateLimited(retry_after(wait))
        })
    }

    fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets clients whose buckets are full again, so memory follows active clients only.
    pub fn shrink(&self) {
        for limiter in [&self.create, &self.not_found].into_iter().flatten() {
            limiter.retain_recent();
        }
    }
}

/// Whole seconds to wait, at least one (the `Retry-After` value).
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The header proxies append the address of their peer to.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address: the peer, or with `trusted_proxies = N` the N-th address from the
/// right of `X-Forwarded-For` (each trusted proxy appends the address it saw). Entries left of
/// that were written by the client and are never trusted, so they are not even parsed: a
/// client cannot knock the header out by adding garbage to it. With fewer entries than trusted
/// hops (a request that reached an inner proxy directly), the left-most entry is the client.
/// When the chosen entry is missing or unparsable, the client is the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: usize) -> IpAddr {
    if trusted_proxies == 0 {
        return peer.to_canonical();
    }
    // Several header lines count as one list, in order: read them, and their entries, from
    // the right.
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
        .take(trusted_proxies)
        .last()
        .and_then(|entry| std::str::from_utf8(entry).ok())
        .and_then(parse_forwarded)
        .unwrap_or(peer)
        .to_canonical()
}

/// One `X-Forwarded-For` entry as proxies write it: `1.2.3.4`, `2001:db8::1`, and with a port
/// `1.2.3.4:5678` or `[2001:db8::1]:5678` (or in brackets without one).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })
}

/// The client address of a request, for rate limiting. Never fails: without a peer address
/// (in-process tests) every request shares one bucket.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions, &parts.headers, state))
    }
}

impl ClientIp {
    /// The client address of a request with these extensions and headers.
    pub fn of(extensions: &Extensions, headers: &HeaderMap, state: &AppState) -> Self {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Self(client_ip(
            peer,
            headers,
            state.settings.limits.trusted_proxies,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_are_trusted_only_through_configured_hops() {
        let peer = ip("10.0.0.9");
        let spoofed = headers("6.6.6.6, 1.2.3.4");
        assert_eq!(
            client_ip(peer, &spoofed, 0),
            peer,
            "no proxy trusted: the peer"
        );
        assert_eq!(client_ip(peer, &spoofed, 1), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, &spoofed, 2), ip("6.6.6.6"));
        assert_eq!(
            client_ip(peer, &spoofed, 5),
            ip("6.6.6.6"),
            "fewer entries than hops: the left-most"
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer);
    }

    #[test]
    fn only_the_trusted_entry_is_parsed() {
        let peer = ip("10.0.0.9");
        // Garbage the client put left of the trusted entries changes nothing.
        for xff in [
            "garbage, 1.2.3.4, 10.0.0.1",
            "<script>, ,1.2.3.4,10.0.0.1",
            "1.2.3.4, 10.0.0.1",
        ] {
            assert_eq!(client_ip(peer, &headers(xff), 2), ip("1.2.3.4"), "{xff}");
        }
        // Several header lines are one list.
        let mut two_lines = HeaderMap::new();
        two_lines.append("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        two_lines.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        assert_eq!(client_ip(peer, &two_lines, 2), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, &two_lines, 1), ip("10.0.0.1"));
        // The trusted entry itself garbled or empty: the peer.
        assert_eq!(client_ip(peer, &headers("1.2.3.4, garbage"), 1), peer);
        assert_eq!(client_ip(peer, &headers("1.2.3.4,"), 1), peer);
        assert_eq!(client_ip(peer, &headers(""), 1), peer);
    }

    #[test]
    fn entries_with_ports_and_brackets_parse() {
        let peer = ip("10.0.0.9");
        for (xff, want) in [
            ("192.0.2.7:4711", "192.0.2.7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            (" 2001:db8::7 ", "2001:db8::7"),
            // An IPv4 client seen through an IPv6 socket is the same client.
            ("::ffff:192.0.2.7", "192.0.2.7"),
        ] {
            assert_eq!(client_ip(peer, &headers(xff), 1), ip(want), "{xff}");
        }
        assert_eq!(client_ip(peer, &headers("[192.0.2.7]:80"), 1), peer);
        assert_eq!(client_ip(peer, &headers("192.0.2.7:port"), 1), peer);
    }

    #[test]
    fn a_burst_over_the_limit_is_refused_with_a_wait() {
        let limits = RateLimits::new(&LimitSettings {
            create_per_minute: 3,
            not_found_per_minute: 2,
            trusted_proxies: 0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_create(ip).unwrap();
        }
        assert!(
            matches!(limits.check_create(ip), Err(AppError::RateLimited(s)) if (1..=20).contains(&s))
        );
        limits.check_create("192.0.2.2".parse().unwrap()).unwrap();

        limits.check_lookup(ip).unwrap();
        limits.record_not_found(ip).unwrap();
        limits.record_not_found(ip).unwrap();
        assert!(limits.record_not_found(ip).is_err());
        assert!(
            limits.check_lookup(ip).is_err(),
            "blocked from every lookup"
        );
    }
}
