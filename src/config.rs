//! Command line and environment: every flag is also an environment variable (12-factor).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::link::DisableReason;
use crate::store::{PoolOptions, Synchronous};

/// A URL shortener: one binary, SQLite on one machine, Postgres for a fleet.
#[derive(Debug, Parser)]
#[command(
    name = "shortener",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line. `RUST_LOG` sets the filter.
    #[arg(long, env = "SHORTENER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `serve`, also accepted without the word `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Probe a running instance's readiness: exit 0 when `/readyz` answers 200, 1 otherwise.
    Healthcheck(HealthcheckArgs),
    /// Copy every link and its click count from one database to another (e.g. SQLite to
    /// Postgres). Safe to re-run: nothing is duplicated, links already copied catch up (clicks,
    /// disables), a different link under the same code is reported and never overwritten.
    Copy(CopyArgs),
    /// Write every link as JSON Lines (one link per line) to a file or standard output.
    Export(ExportArgs),
    /// Read links in JSON Lines (as written by `export`) into the database.
    Import(ImportArgs),
    /// Manage API keys.
    Keys(KeysArgs),
    /// Manage links (operator actions).
    Links(LinksArgs),
}

/// Options of `copy`.
#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// Database to read from (`sqlite:PATH` or `postgres://...`): it must exist, and is only
    /// read (never created or migrated). A URL with a password is better in the environment
    /// than on the command line.
    #[arg(long, env = "SHORTENER_COPY_FROM", hide_env_values = true)]
    pub from: String,
    /// Database to write to; created (SQLite) and migrated first.
    #[arg(long, env = "SHORTENER_COPY_TO", hide_env_values = true)]
    pub to: String,
    /// Links per batch (one transaction each; larger batches write each index page fewer times).
    #[arg(long, env = "SHORTENER_COPY_BATCH_SIZE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Connection settings, for both databases.
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// Options of `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,
    /// File to write; standard output when omitted.
    #[arg(long, short, env = "SHORTENER_EXPORT_OUTPUT")]
    pub output: Option<std::path::PathBuf>,
}

/// Options of `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,
    /// File to read; standard input when omitted.
    #[arg(long, short, env = "SHORTENER_IMPORT_INPUT")]
    pub input: Option<std::path::PathBuf>,
    /// Links per batch (one transaction each; larger batches write each index page fewer times).
    #[arg(long, env = "SHORTENER_IMPORT_BATCH_SIZE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
}

/// Options of `keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub action: KeysAction,
}

/// What to do with API keys.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        /// A name to recognise the key by (who or what uses it).
        #[arg(long)]
        name: String,
    },
    /// List keys (ids and names, never the keys).
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke {
        /// The key's id (the part after `shk_`, before the second `_`).
        id: String,
    },
}

/// Options of `links`.
#[derive(Debug, Clone, Args)]
pub struct LinksArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub action: LinksAction,
}

/// Operator actions on links.
#[derive(Debug, Clone, Subcommand)]
pub enum LinksAction {
    /// Disable a link: it answers 410 with a notice, and its code is never reused.
    Disable {
        /// The short code.
        code: String,
        /// Why (kept with the link and logged), e.g. "phishing, abuse report 123": one line,
        /// at most 500 characters.
        #[arg(long, value_parser = DisableReason::parse)]
        reason: DisableReason,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which database, and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite:PATH` for one instance (a relative path is relative to the
    /// current directory; created if missing by `serve`, `migrate` and `import` only), or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` for several.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://shortener.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Connection settings.
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// How to talk to a database: pool size, timeouts, statement cache.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most database connections per instance.
    #[arg(long, env = "SHORTENER_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// How long to wait for a database connection before failing the request (e.g. `3s`).
    #[arg(long, env = "SHORTENER_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_positive_duration)]
    pub db_acquire_timeout: Duration,

    /// How long to keep trying to reach the database at start-up (it may still be booting).
    #[arg(long, env = "SHORTENER_DB_CONNECT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub db_connect_timeout: Duration,

    /// Cache prepared statements (Postgres). Set to false behind a transaction-pooling proxy
    /// such as PgBouncer.
    #[arg(long, env = "SHORTENER_DB_STATEMENT_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub db_statement_cache: bool,

    /// SQLite: when a write counts as done. `full`: once it is on disk, so it survives a crash
    /// of the machine; `normal`: once the OS has it, which survives a crash of the process
    /// (`kill -9`) but may lose the last commits on a power loss or kernel crash, for about a
    /// third more creates per second under load.
    #[arg(long, env = "SHORTENER_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,
}

impl PoolArgs {
    /// The pool settings these flags describe.
    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_cache: self.db_statement_cache,
            sqlite_synchronous: self.sqlite_synchronous,
            ..PoolOptions::default()
        }
    }
}

/// Options of the HTTP service.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the public HTTP listener.
    #[arg(long, env = "SHORTENER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Base of every short link shown (e.g. `https://sho.rt`). Default: derived from `--listen`.
    #[arg(long, env = "SHORTENER_PUBLIC_URL")]
    pub public_url: Option<url::Url>,

    /// Address of the Prometheus metrics listener (`GET /metrics`); keep it private.
    /// `off` disables it.
    #[arg(long, env = "SHORTENER_METRICS_LISTEN", default_value = "127.0.0.1:9090", value_parser = parse_optional_addr)]
    pub metrics_listen: OptionalAddr,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArgs,

    /// Status code of redirects: 301, 302, 307 or 308. 302 (the default) keeps edits and
    /// click counts working; 301/308 are cached by browsers.
    #[arg(long, env = "SHORTENER_REDIRECT_STATUS", default_value = "302", value_parser = parse_redirect_status)]
    pub redirect_status: StatusCode,

    /// Length of generated codes (56-letter alphabet: 7 characters give 1.7e12 codes).
    #[arg(long, env = "SHORTENER_CODE_LENGTH", default_value_t = 7, value_parser = clap::value_parser!(u8).range(4..=32))]
    pub code_length: u8,

    /// Longest target URL accepted, in bytes after normalisation.
    #[arg(long, env = "SHORTENER_MAX_URL_LENGTH", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..=65536))]
    pub max_url_length: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SHORTENER_BODY_LIMIT", default_value_t = 16 * 1024)]
    pub body_limit: usize,

    /// Creates (form and API without a key) per minute per client; 0 turns the limit off.
    #[arg(long, env = "SHORTENER_CREATE_RATE_LIMIT", default_value_t = 60)]
    pub create_rate_limit: u32,

    /// Lookups of unknown codes per minute per client (against code guessing); 0 turns the
    /// limit off. A client over it gets 429 for every lookup until its budget refills.
    #[arg(long, env = "SHORTENER_NOT_FOUND_RATE_LIMIT", default_value_t = 120)]
    pub not_found_rate_limit: u32,

    /// Proxies in front of the service (load balancer, CDN) whose `X-Forwarded-For` entries
    /// are trusted, counted from the right. 0 (the default) trusts no header: the client is the
    /// TCP peer. Behind one AWS ALB: 1.
    #[arg(long, env = "SHORTENER_TRUSTED_PROXIES", default_value_t = 0)]
    pub trusted_proxies: usize,

    /// Whether anyone may create links (true), or only holders of an API key (false: the
    /// form is closed and the API needs `Authorization: Bearer`).
    #[arg(long, env = "SHORTENER_PUBLIC_CREATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_create: bool,

    /// File of blocked destination domains (one a line; a domain blocks its subdomains),
    /// reloaded on SIGHUP.
    #[arg(long, env = "SHORTENER_BLOCKLIST")]
    pub blocklist: Option<std::path::PathBuf>,

    /// Links kept in the in-process cache (0 disables it). A link whose URL is longer than
    /// 256 bytes counts once more for each further 256, so the cache's memory stays bounded
    /// whatever the URLs' length.
    #[arg(long, env = "SHORTENER_CACHE_SIZE", default_value_t = 100_000)]
    pub cache_size: u64,

    /// How long a cached link is trusted. With several instances this bounds how long a
    /// deleted link can still redirect through another instance (Postgres also notifies at once).
    #[arg(long, env = "SHORTENER_CACHE_TTL", default_value = "30s", value_parser = parse_cache_ttl)]
    pub cache_ttl: Duration,

    /// How long a code found missing is remembered, so floods of unknown codes do not reach
    /// the database (0 disables). Creating a link clears its entry on this instance, and on
    /// Postgres a new custom alias clears it on every instance at once.
    #[arg(long, env = "SHORTENER_CACHE_NEGATIVE_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cache_negative_ttl: Duration,

    /// How often click counts are written to the database. Longer costs redirects less under
    /// traffic to many links, but every link clicked since the last write is held in memory
    /// until then (or until they hold `--click-flush-bytes`), counts show later, and a crash
    /// loses more of them (a graceful stop writes them all).
    #[arg(long, env = "SHORTENER_CLICK_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_positive_duration)]
    pub click_flush_interval: Duration,

    /// Memory, in bytes, that the links clicked since the last write of click counts may hold
    /// before the next write runs, ahead of its interval (each link counts its URL and 128
    /// bytes); 0 waits for the interval whatever they hold.
    #[arg(long, env = "SHORTENER_CLICK_FLUSH_BYTES", default_value_t = crate::clicks::DEFAULT_FLUSH_BYTES)]
    pub click_flush_bytes: usize,

    /// Longest time a request may take before it is answered 503.
    #[arg(long, env = "SHORTENER_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// How long a client may take to send a request's headers (also the idle limit of a
    /// kept-alive connection) before it is closed: slow or silent clients cannot hold
    /// connections open.
    #[arg(long, env = "SHORTENER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,

    /// After SIGTERM, how long `/readyz` reports 503 while requests are still served, so a load
    /// balancer stops sending traffic before the listener closes.
    #[arg(long, env = "SHORTENER_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the drain delay, how long in-flight requests get to finish.
    #[arg(long, env = "SHORTENER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Options of `healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to probe. Default: `/readyz` at `SHORTENER_LISTEN` (on loopback when that address
    /// is the wildcard `0.0.0.0` or `[::]`).
    #[arg(long, env = "SHORTENER_HEALTHCHECK_URL")]
    pub url: Option<String>,

    /// The service's listen address, used when `--url` is not given.
    #[arg(long, env = "SHORTENER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Give up after this long.
    #[arg(long, env = "SHORTENER_HEALTHCHECK_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

/// A duration where zero means nothing useful (a timer that never waits, a timeout that
/// always fires; `tokio::time::interval` even panics on it): refused when the flags are read.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero (e.g. 500ms, 3s)".into());
    }
    Ok(duration)
}

/// `--cache-ttl`: longer than zero, since `--cache-size 0` is how the cache is turned off.
fn parse_cache_ttl(s: &str) -> Result<Duration, String> {
    parse_positive_duration(s)
        .map_err(|e| format!("{e}; to turn the cache off, use --cache-size 0"))
}

fn parse_redirect_status(s: &str) -> Result<StatusCode, String> {
    match s {
        "301" | "302" | "307" | "308" => Ok(StatusCode::from_bytes(s.as_bytes()).expect("valid")),
        _ => Err("must be 301, 302, 307 or 308".into()),
    }
}

/// A listen address that can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    match s {
        "" | "off" | "none" => Ok(OptionalAddr(None)),
        _ => s
            .parse()
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{e}: expected HOST:PORT or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "shortener",
            "--listen",
            "0.0.0.0:80",
            "--redirect-status",
            "301",
            "--metrics-listen",
            "off",
            "--drain-delay",
            "5s",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.port(), 80);
        assert_eq!(cli.serve.redirect_status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(cli.serve.metrics_listen, OptionalAddr(None));
        assert_eq!(cli.serve.drain_delay, Duration::from_secs(5));
        assert!(Cli::try_parse_from(["shortener", "--redirect-status", "200"]).is_err());
    }

    #[test]
    fn sqlite_synchronous_is_full_unless_asked_for_normal() {
        let cli = Cli::try_parse_from(["shortener", "--sqlite-synchronous", "normal"]).unwrap();
        let options = cli.serve.database.pool.pool_options();
        assert_eq!(options.sqlite_synchronous, Synchronous::Normal);
        let e = Cli::try_parse_from(["shortener", "--sqlite-synchronous", "off"]).unwrap_err();
        assert!(e.to_string().contains("full, normal"), "{e}");
    }

    #[test]
    fn copy_takes_the_database_flags_and_its_urls_from_the_environment() {
        let cli = Cli::try_parse_from([
            "shortener",
            "copy",
            "--from",
            "sqlite://a.db",
            "--to",
            "postgres://db/x",
            "--db-statement-cache",
            "false",
            "--db-acquire-timeout",
            "7s",
            "--db-max-connections",
            "2",
            "--db-connect-timeout",
            "1s",
        ])
        .unwrap();
        let Some(Command::Copy(copy)) = cli.command else {
            panic!("not a copy: {cli:?}");
        };
        let options = copy.pool.pool_options();
        assert!(!options.statement_cache);
        assert_eq!(options.sqlite_synchronous, Synchronous::Full);
        assert_eq!(options.acquire_timeout, Duration::from_secs(7));
        assert_eq!(options.max_connections, 2);
        assert_eq!(copy.pool.db_connect_timeout, Duration::from_secs(1));
        // Every flag has an environment variable, and `--help` names it.
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("copy")
            .unwrap()
            .render_long_help()
            .to_string();
        for var in [
            "SHORTENER_COPY_FROM",
            "SHORTENER_COPY_TO",
            "SHORTENER_COPY_BATCH_SIZE",
            "SHORTENER_DB_STATEMENT_CACHE",
        ] {
            assert!(help.contains(var), "{var} missing from:\n{help}");
        }
    }

    #[test]
    fn every_flag_of_every_command_has_an_environment_variable() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                // clap's own flags, positional arguments and `--name`/`--reason` of one-off
                // operator actions are not settings.
                if arg.is_positional() || ["help", "version", "name", "reason"].contains(&id) {
                    continue;
                }
                assert!(arg.get_env().is_some(), "{path} --{id} has no env var");
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "shortener");
    }

    #[test]
    fn durations_where_zero_is_meaningless_refuse_it() {
        for flag in [
            "--click-flush-interval",
            "--request-timeout",
            "--header-read-timeout",
            "--db-acquire-timeout",
            "--cache-ttl",
        ] {
            let e = Cli::try_parse_from(["shortener", flag, "0s"]).unwrap_err();
            assert!(
                e.to_string().contains("must be longer than zero"),
                "{flag}: {e}"
            );
            assert!(
                Cli::try_parse_from(["shortener", flag, "250ms"]).is_ok(),
                "{flag}"
            );
        }
        let e = Cli::try_parse_from(["shortener", "healthcheck", "--timeout", "0ms"]).unwrap_err();
        assert!(e.to_string().contains("must be longer than zero"), "{e}");
        let e = Cli::try_parse_from(["shortener", "--cache-ttl", "0s"]).unwrap_err();
        assert!(e.to_string().contains("--cache-size 0"), "{e}");
        // Where zero means something (no drain, no wait, no memory of misses, one attempt).
        for flag in [
            "--drain-delay",
            "--shutdown-timeout",
            "--cache-negative-ttl",
            "--db-connect-timeout",
        ] {
            assert!(
                Cli::try_parse_from(["shortener", flag, "0s"]).is_ok(),
                "{flag}"
            );
        }
    }
}
