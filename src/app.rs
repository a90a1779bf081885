//! Shared state, the operations handlers call, and the router with its layers.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tower::Layer;
use url::Url;

use crate::blocklist::Blocklist;
use crate::cache::{LinkCache, Lookup, Target};
use crate::clicks::ClickCounter;
use crate::config::ServeArgs;
use crate::error::AppError;
use crate::link::{Link, ShortCode, TargetUrl, UrlError, UrlPolicy};
use crate::ratelimit::{LimitSettings, RateLimits};
use crate::routes::Routes;
use crate::store::{AnyStore, Store, StoreError};
use crate::track::{Track, TrackLayer};
use crate::writer::CreateWriter;

/// Generated codes are retried this many times on a unique-key conflict. With the default
/// length a single conflict is already a one-in-billions event.
const CREATE_ATTEMPTS: usize = 5;

/// Run-time settings of the HTTP service, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of short links, always ending in `/`.
    pub public_url: Url,
    /// Longest accepted target URL.
    pub max_url_length: usize,
    /// Status of redirects (301, 302, 307 or 308).
    pub redirect_status: StatusCode,
    /// Length of generated codes.
    pub code_length: usize,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Rate limits and trusted proxies.
    pub limits: LimitSettings,
    /// Whether creating links needs no API key.
    pub public_create: bool,
    /// Links kept in the in-process cache (0: no cache).
    pub cache_size: u64,
    /// How long a cached link is trusted.
    pub cache_ttl: Duration,
    /// How long a code found missing is remembered (zero: not at all).
    pub cache_negative_ttl: Duration,
    /// How often click counts are written.
    pub click_flush_interval: Duration,
    /// What the links clicked since the last write may hold before the next one runs early
    /// (0: no limit).
    pub click_flush_bytes: usize,
    /// After SIGTERM: how long readiness reports 503 before the listener closes.
    pub drain_delay: Duration,
    /// After the drain: how long in-flight requests get.
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// Defaults for a service whose short links start with `public_url`.
    pub fn new(public_url: Url) -> Self {
        Self {
            public_url: with_trailing_slash(public_url),
            max_url_length: 2048,
            redirect_status: StatusCode::FOUND,
            code_length: 7,
            body_limit: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            limits: LimitSettings::default(),
            public_create: true,
            cache_size: 100_000,
            cache_ttl: Duration::from_secs(30),
            cache_negative_ttl: Duration::from_secs(5),
            click_flush_interval: Duration::from_secs(1),
            click_flush_bytes: crate::clicks::DEFAULT_FLUSH_BYTES,
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// Settings from the command line; `bound` is the address actually listened on, from which
    /// the public URL is derived when none is given.
    pub fn from_args(args: &ServeArgs, bound: SocketAddr) -> Self {
        let public_url = args
            .public_url
            .clone()
            .unwrap_or_else(|| derive_public_url(bound));
        Self {
            max_url_length: args.max_url_length as usize,
            redirect_status: args.redirect_status,
            code_length: usize::from(args.code_length),
            body_limit: args.body_limit,
            request_timeout: args.request_timeout,
            header_read_timeout: args.header_read_timeout,
            limits: LimitSettings {
                create_per_minute: args.create_rate_limit,
                not_found_per_minute: args.not_found_rate_limit,
                trusted_proxies: args.trusted_proxies,
            },
            public_create: args.public_create,
            cache_size: args.cache_size,
            cache_ttl: args.cache_ttl,
            cache_negative_ttl: args.cache_negative_ttl,
            click_flush_interval: args.click_flush_interval,
            click_flush_bytes: args.click_flush_bytes,
            drain_delay: args.drain_delay,
            shutdown_timeout: args.shutdown_timeout,
            ..Self::new(public_url)
        }
    }

    /// The absolute short URL of `code`.
    pub fn short_url(&self, code: &str) -> String {
        format!("{}{code}", self.public_url)
    }

    /// The rules a target URL must meet under these settings.
    pub fn url_policy(&self) -> UrlPolicy {
        UrlPolicy {
            max_len: self.max_url_length,
            own_url: self.public_url.clone(),
        }
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// `http://HOST:PORT/` for the listen address; an unspecified address (0.0.0.0, ::) becomes
/// `localhost`, which is only right on this machine: set `--public-url` in production.
fn derive_public_url(bound: SocketAddr) -> Url {
    let host = match bound.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Url::parse(&format!("http://{host}:{}/", bound.port())).expect("a valid URL")
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    /// Durable storage.
    pub store: AnyStore,
    /// Run-time settings.
    pub settings: Settings,
    /// Hot links.
    pub cache: LinkCache,
    /// Clicks not yet written.
    pub clicks: ClickCounter,
    /// Per-client rate limits.
    pub limits: RateLimits,
    /// Destinations refused on create.
    pub blocklist: Blocklist,
    /// Writes new links, many per transaction.
    writer: CreateWriter,
    policy: UrlPolicy,
    /// Set once shutdown begins; shared with the request layer, which then closes each
    /// connection after its response.
    shutting_down: Arc<AtomicBool>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over a connected (and migrated) store, with no blocklist.
    pub fn new(store: AnyStore, settings: Settings) -> Self {
        Self::with_blocklist(store, settings, Blocklist::default())
    }

    /// State with a destination blocklist. Starts the link writer, so it must be called
    /// within a Tokio runtime.
    pub fn with_blocklist(store: AnyStore, settings: Settings, blocklist: Blocklist) -> Self {
        Self(Arc::new(Shared {
            writer: CreateWriter::start(store.clone()),
            cache: LinkCache::new(
                settings.cache_size,
                settings.cache_ttl,
                settings.cache_negative_ttl,
            ),
            clicks: ClickCounter::new(settings.click_flush_bytes),
            limits: RateLimits::new(&settings.limits),
            blocklist,
            policy: settings.url_policy(),
            store,
            settings,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// Marks the instance as stopping: readiness answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Creates a link to `url`, under `slug` when given, else under a fresh random code.
    pub async fn create_link(&self, url: &str, slug: Option<&str>) -> Result<Link, AppError> {
        let target = TargetUrl::parse(url, &self.policy)?;
        if let Some(entry) = self.blocklist.matching(target.host()) {
            tracing::info!(%entry, "create refused: destination on the blocklist");
            return Err(UrlError::Blocked(entry).into());
        }
        let slug = slug.map(str::trim).filter(|s| !s.is_empty());
        let link = match slug {
            Some(slug) => {
                let code = ShortCode::parse_alias(slug)?;
                let link = Link::new(&code, &target);
                if !self.writer.insert(link.clone()).await? {
                    return Err(AppError::AliasTaken(code.to_string()));
                }
                // Someone may have tried this alias on another instance before it existed.
                self.store.announce(&link.code).await;
                link
            }
            None => self.insert_with_fresh_code(&target).await?,
        };
        // A code may have been looked up (and found missing) before it existed.
        self.cache.invalidate(&link.code);
        metrics::counter!("shortener_links_created_total").increment(1);
        Ok(link)
    }

    async fn insert_with_fresh_code(&self, target: &TargetUrl) -> Result<Link, AppError> {
        for _ in 0..CREATE_ATTEMPTS {
            let code = ShortCode::generate_unreserved(self.settings.code_length);
            let link = Link::new(&code, target);
            if self.writer.insert(link.clone()).await? {
                return Ok(link);
            }
            tracing::info!("generated code already taken, retrying with a new one");
        }
        Err(AppError::Internal(StoreError::Conflict))
    }

    /// Where `code` leads, from the cache or the store. `None` when no link has this code.
    pub async fn resolve(&self, code: &str) -> Result<Option<Target>, AppError> {
        match self.cache.get(code) {
            Lookup::Hit(target) => return Ok(Some(target)),
            Lookup::Missing => return Ok(None),
            Lookup::Unknown => {}
        }
        let Some(destination) = self.store.destination(code).await? else {
            self.cache.remember_missing(code);
            return Ok(None);
        };
        let target = Target::new(code, destination);
        self.cache.insert(code, target.clone());
        Ok(Some(target))
    }
}

/// The public service: the routes in the request layer.
pub type App = Track<Routes>;

/// The public service: the routes, in the request layer ([`crate::track`]).
pub fn router(state: AppState) -> App {
    let track = TrackLayer::new(state.settings.request_timeout, state.shutting_down.clone());
    track.layer(Routes::new(state))
}
