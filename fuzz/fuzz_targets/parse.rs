//! Fuzzes the parsers that take untrusted text at the edge of the service: short codes from
//! request paths, custom aliases and target URLs (`shortener::link`).
//!
//! Every input goes through all three parsers. None may panic, and whatever they accept must
//! hold what the rest of the service relies on without checking again ("parse, don't
//! validate"):
//!
//! - a code is 1 to 64 ASCII letters, digits, `-` or `_`, exactly as given;
//! - an alias is the trimmed input, 3 to 64 such characters, starting and ending with a letter
//!   or a digit, and reads back as the same code;
//! - a target URL is http(s) with a host, no credentials, within the length limit and not the
//!   shortener itself; its text is ASCII and a valid header value, because it is sent as the
//!   `Location` of a redirect; and parsing that text again gives the same URL, because stored
//!   links are parsed again on import and edits and must compare equal.
//!
//! The checks restate the documented rules instead of calling into the crate's own helpers, so
//! a wrong helper cannot hide a wrong parser.

#![no_main]

use std::sync::LazyLock;

use axum::http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use shortener::app::Settings;
use shortener::link::{ALIAS_MIN_LEN, AliasError, CODE_MAX_LEN, ShortCode, TargetUrl, UrlPolicy};
use url::Url;

/// Public URL of a service started without options: derived from the default `--listen`.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080/";

/// The policy of a service started without options. Built once: it is the same for every
/// input, and building it per input would only slow the fuzzer down.
static POLICY: LazyLock<UrlPolicy> = LazyLock::new(|| {
    let settings = Settings::new(Url::parse(DEFAULT_PUBLIC_URL).expect("a valid URL"));
    // `Settings::url_policy` is private to the crate; this is the policy it builds.
    UrlPolicy {
        max_len: settings.max_url_length,
        own_url: settings.public_url,
    }
});

// `&str` rather than `&[u8]`: every parser takes text, and a crash found by the fuzzer then
// prints as a readable string (`cargo fuzz fmt`). Bytes that are not UTF-8 are cut off at the
// first invalid sequence.
fuzz_target!(|input: &str| {
    check_code(input);
    check_alias(input);
    check_target_url(input, &POLICY);
});

/// The documented charset of every code and alias.
fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A code from a request path is accepted exactly when it follows the documented rules, and is
/// kept as given (codes are case-sensitive).
fn check_code(input: &str) {
    let valid = (1..=CODE_MAX_LEN).contains(&input.len()) && input.chars().all(is_code_char);
    match ShortCode::parse(input) {
        Some(code) => {
            assert!(valid, "ShortCode::parse accepted {input:?}");
            assert_eq!(code.as_str(), input, "ShortCode::parse changed {input:?}");
        }
        None => assert!(!valid, "ShortCode::parse refused {input:?}"),
    }
}

/// An alias is accepted only when it follows the documented rules, and every alias that follows
/// them is accepted unless it is a reserved word. The exact error of a refused alias is not
/// checked: which rule is reported first is not part of the contract.
fn check_alias(input: &str) {
    let trimmed = input.trim();
    let valid = (ALIAS_MIN_LEN..=CODE_MAX_LEN).contains(&trimmed.len())
        && trimmed.chars().all(is_code_char)
        && trimmed.starts_with(|c: char| c.is_ascii_alphanumeric())
        && trimmed.ends_with(|c: char| c.is_ascii_alphanumeric());
    match ShortCode::parse_alias(input) {
        Ok(alias) => {
            assert!(valid, "parse_alias accepted {input:?} as {alias:?}");
            assert_eq!(
                alias.as_str(),
                trimmed,
                "parse_alias kept more than the trimmed input"
            );
            // An alias is stored and looked up as a code: both parsers must take it back.
            assert_eq!(ShortCode::parse(alias.as_str()).as_ref(), Some(&alias));
            assert_eq!(ShortCode::parse_alias(alias.as_str()).as_ref(), Ok(&alias));
        }
        Err(AliasError::Reserved(word)) => {
            assert!(valid, "parse_alias called {input:?} reserved, not invalid");
            assert_eq!(
                word, trimmed,
                "the reserved word reported is not the one given"
            );
        }
        Err(e) => assert!(!valid, "parse_alias refused {input:?}: {e}"),
    }
}

/// An accepted target URL is safe to store and to redirect to.
fn check_target_url(input: &str, policy: &UrlPolicy) {
    let Ok(target) = TargetUrl::parse(input, policy) else {
        return;
    };
    let text = target.as_str();
    assert!(text.is_ascii(), "non-ASCII URL {text:?} from {input:?}");
    assert!(
        HeaderValue::from_str(text).is_ok(),
        "URL {text:?} from {input:?} is not a valid Location header"
    );
    assert!(
        text.len() <= policy.max_len,
        "URL of {} bytes is over the limit",
        text.len()
    );
    assert_eq!(
        TargetUrl::parse(text, policy).as_ref(),
        Ok(&target),
        "normalising {input:?} is not idempotent"
    );

    let url = Url::parse(text).expect("the text of an accepted URL parses");
    assert!(
        matches!(url.scheme(), "http" | "https"),
        "scheme of {text:?}"
    );
    assert!(!target.host().is_empty(), "no host in {text:?}");
    assert_eq!(url.host_str(), Some(target.host()), "host of {text:?}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "credentials in {text:?}"
    );
    assert!(
        !is_own_site(&url, &policy.own_url),
        "{text:?} points back at the shortener"
    );
}

/// Restates the documented self-reference rule: same host name (case and trailing dot aside),
/// and the same port or a default port (80, 443) on either side.
fn is_own_site(url: &Url, own: &Url) -> bool {
    let name = |u: &Url| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    };
    let is_default = |port: Option<u16>| matches!(port, None | Some(80 | 443));
    let (port, own_port) = (url.port_or_known_default(), own.port_or_known_default());
    name(url) == name(own) && (port == own_port || is_default(port) || is_default(own_port))
}
