//! Domain types: short codes, custom aliases, target URLs and the stored link.
//!
//! Values are parsed once at the edge ("parse, don't validate"): a [`ShortCode`] or a
//! [`TargetUrl`] that exists is known to be well formed, so the store and the handlers never
//! re-check them.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

/// `n` bytes from the thread's CSPRNG (ChaCha, seeded and reseeded from the OS).
///
/// nanoid's default generator seeds a new generator from the OS for every code: a `getrandom`
/// call per create on the write path, which this avoids at the same quality.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    bytes
}

/// Alphabet of generated codes: digits and letters without look-alikes (`0 O o 1 l I`), so a
/// code read aloud or copied from print comes out right.
pub const CODE_ALPHABET: [char; 56] = [
    '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k',
    'm', 'n', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B', 'C', 'D', 'E', 'F',
    'G', 'H', 'J', 'K', 'L', 'M', 'N', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z',
];

/// Shortest custom alias accepted.
pub const ALIAS_MIN_LEN: usize = 3;
/// Longest code or alias accepted anywhere.
pub const CODE_MAX_LEN: usize = 64;

/// Words that can never be an alias: paths the service itself answers, and words a reader could
/// take for an official page of the site.
const RESERVED: &[&str] = &[
    "api",
    "healthz",
    "readyz",
    "metrics",
    "static",
    "favicon.ico",
    "robots.txt",
    "admin",
    "login",
    "logout",
    "signup",
    "account",
    "settings",
    "about",
    "help",
    "docs",
    "new",
    "www",
];

/// The key of a link in a URL path: generated (nanoid) or a custom alias.
///
/// Codes are case-sensitive. Any code is 1 to 64 characters of ASCII letters, digits, `-`
/// and `_`; generated codes use [`CODE_ALPHABET`] only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ShortCode(String);

/// Why a string is not a usable custom alias.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AliasError {
    /// Shorter than [`ALIAS_MIN_LEN`] or longer than [`CODE_MAX_LEN`].
    #[error("an alias must be {ALIAS_MIN_LEN} to {CODE_MAX_LEN} characters long")]
    Length,
    /// A character outside `A-Z a-z 0-9 - _`.
    #[error("an alias may contain only letters A-Z, digits, '-' and '_'")]
    Charset,
    /// Starts or ends with `-` or `_`.
    #[error("an alias must start and end with a letter or a digit")]
    Edge,
    /// One of the words the service keeps for itself.
    #[error("\"{0}\" is reserved; choose another alias")]
    Reserved(String),
}

/// Whether `s` is one of the reserved words (any case): never an alias, and every fixed path
/// of one segment the service answers is one of them.
pub fn is_reserved(s: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

impl ShortCode {
    /// Parses a code taken from a request path. `None` for anything that can never have been
    /// stored, so such a lookup is answered without touching the database.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_borrowed(s).map(|s| Self(s.to_owned()))
    }

    /// [`ShortCode::parse`] without the copy, for a lookup that only needs the text (the
    /// redirect path, where the allocation is measurable).
    pub fn parse_borrowed(s: &str) -> Option<&str> {
        (!s.is_empty() && s.len() <= CODE_MAX_LEN && s.bytes().all(is_code_byte)).then_some(s)
    }

    /// Parses a custom alias chosen by a user: stricter than [`ShortCode::parse`].
    pub fn parse_alias(s: &str) -> Result<Self, AliasError> {
        let s = s.trim();
        if s.len() < ALIAS_MIN_LEN || s.len() > CODE_MAX_LEN {
            return Err(AliasError::Length);
        }
        // Bytes, not chars: every byte of a non-ASCII character is above 0x7f, so refused.
        if !s.bytes().all(is_code_byte) {
            return Err(AliasError::Charset);
        }
        if s.starts_with(['-', '_']) || s.ends_with(['-', '_']) {
            return Err(AliasError::Edge);
        }
        if is_reserved(s) {
            return Err(AliasError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh random code of `len` characters from a CSPRNG.
    pub fn generate(len: usize) -> Self {
        Self(nanoid::nanoid!(len, &CODE_ALPHABET, random_bytes))
    }

    /// A fresh random code that is not one of the reserved words.
    pub fn generate_unreserved(len: usize) -> Self {
        loop {
            let code = Self::generate(len);
            if !is_reserved(code.as_str()) {
                return code;
            }
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not an acceptable target URL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    /// Nothing was given.
    #[error("enter the URL to shorten")]
    Empty,
    /// Not an absolute URL at all.
    #[error("this is not a valid URL; it should look like https://example.com/page")]
    Malformed,
    /// A scheme other than http or https (`javascript:`, `data:`, `file:` ...).
    #[error("only http:// and https:// links can be shortened")]
    Scheme,
    /// No host name.
    #[error("the URL needs a host name, like https://example.com")]
    NoHost,
    /// User name or password inside the URL: a classic way to disguise where a link goes.
    #[error("links with a user name or password in them are not accepted")]
    Credentials,
    /// Longer than the configured limit once normalised.
    #[error("the URL is too long: at most {0} characters are accepted")]
    TooLong(usize),
    /// The destination is on the operator's blocklist.
    #[error("links to {0} are not accepted here")]
    Blocked(String),
    /// Points back at this shortener, which would make a redirect loop.
    #[error("links to this shortener itself are not accepted")]
    SelfReference,
}

/// What a target URL is checked against.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// Longest accepted URL, in bytes after normalisation.
    pub max_len: usize,
    /// The shortener's own public URL: targets on the same host are loops.
    pub own_url: Url,
}

/// An absolute http(s) URL, normalised (IDN hosts in punycode, so it is valid ASCII for a
/// `Location` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

impl TargetUrl {
    /// Parses and checks user input against `policy`.
    pub fn parse(input: &str, policy: &UrlPolicy) -> Result<Self, UrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        let url = Url::parse(input).map_err(|_| UrlError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme);
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h,
            _ => return Err(UrlError::NoHost),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if url.as_str().len() > policy.max_len {
            return Err(UrlError::TooLong(policy.max_len));
        }
        if same_site(host, url.port_or_known_default(), &policy.own_url) {
            return Err(UrlError::SelfReference);
        }
        Ok(Self(url))
    }

    /// The normalised URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host (punycode for international names).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

/// True when `host:port` is the shortener itself. A default port on either side counts as a
/// match: `http://sho.rt` and `https://sho.rt` are the same service behind TLS termination,
/// while `127.0.0.1:8080` and `127.0.0.1:9000` are different services.
fn same_site(host: &str, port: Option<u16>, own: &Url) -> bool {
    let Some(own_host) = own.host_str() else {
        return false;
    };
    let host = host.trim_end_matches('.');
    if !host.eq_ignore_ascii_case(own_host.trim_end_matches('.')) {
        return false;
    }
    let default = |p: Option<u16>| matches!(p, None | Some(80) | Some(443));
    let own_port = own.port_or_known_default();
    port == own_port || default(port) || default(own_port)
}

/// Longest reason for disabling a link, in characters.
pub const REASON_MAX_LEN: usize = 500;

/// Why a link was disabled, as an operator or an API client gave it: one line of text (it is
/// logged, and kept with the link), trimmed, 1 to [`REASON_MAX_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisableReason(String);

/// Why a string is not a usable [`DisableReason`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReasonError {
    /// Empty once trimmed, or longer than [`REASON_MAX_LEN`].
    #[error("the reason must be 1 to {REASON_MAX_LEN} characters long")]
    Length,
    /// A line break or another control character: one line of text only.
    #[error("the reason must be one line of text, without control characters")]
    Control,
}

impl DisableReason {
    /// Parses a reason given by a person.
    /// Control characters are refused anywhere, also where trimming would drop them (a tab
    /// or newline at the end), as the API's published pattern says.
    pub fn parse(s: &str) -> Result<Self, ReasonError> {
        if s.chars().any(char::is_control) {
            return Err(ReasonError::Control);
        }
        let s = s.trim();
        if s.is_empty() || s.chars().count() > REASON_MAX_LEN {
            return Err(ReasonError::Length);
        }
        Ok(Self(s.to_owned()))
    }

    /// Like [`DisableReason::parse`], where a blank reason is no reason (`None`).
    pub fn parse_optional(s: &str) -> Result<Option<Self>, ReasonError> {
        match Self::parse(s) {
            Err(ReasonError::Length) if s.trim().is_empty() => Ok(None),
            parsed => parsed.map(Some),
        }
    }

    /// The reason as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A link as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Link {
    /// The short code.
    pub code: String,
    /// The target URL (normalised).
    pub url: String,
    /// When it was created (UTC, millisecond precision in every backend).
    pub created_at: DateTime<Utc>,
    /// Clicks counted so far (flushed in batches, so it may lag by about a second).
    pub clicks: i64,
    /// When it was disabled or deleted; such a link answers 410 and its code is never reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

impl Link {
    /// A new, never-clicked link created now.
    pub fn new(code: &ShortCode, url: &TargetUrl) -> Self {
        Self {
            code: code.as_str().to_owned(),
            url: url.as_str().to_owned(),
            created_at: now(),
            clicks: 0,
            disabled_at: None,
            disabled_reason: None,
        }
    }

    /// True when the link no longer redirects.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// What a redirect needs of a stored link, read without the rest of its row (decoding three
/// timestamps is a measurable part of an uncached redirect).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Destination {
    /// The target URL (normalised).
    pub url: String,
    /// True when the link no longer redirects.
    pub disabled: bool,
}

/// The current time at the precision every backend keeps (milliseconds), so a link read back
/// compares equal to the one written, whichever database holds it.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

#[cfg(test)]
impl Link {
    /// A never-clicked link created now, from a code and URL taken as they are (for tests).
    pub(crate) fn unchecked(code: &str, url: &str) -> Self {
        Self {
            code: code.into(),
            url: url.into(),
            created_at: now(),
            clicks: 0,
            disabled_at: None,
            disabled_reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> UrlPolicy {
        UrlPolicy {
            max_len: 2048,
            own_url: Url::parse("https://sho.rt").unwrap(),
        }
    }

    #[test]
    fn generated_codes_use_the_alphabet_and_length() {
        for len in [4, 7, 12] {
            let code = ShortCode::generate(len);
            assert_eq!(code.as_str().chars().count(), len);
            assert!(code.as_str().chars().all(|c| CODE_ALPHABET.contains(&c)));
            assert_eq!(ShortCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn aliases_are_checked() {
        assert!(ShortCode::parse_alias("my-link_2").is_ok());
        assert_eq!(ShortCode::parse_alias("ab"), Err(AliasError::Length));
        assert_eq!(ShortCode::parse_alias("a b c"), Err(AliasError::Charset));
        assert_eq!(ShortCode::parse_alias("<script>"), Err(AliasError::Charset));
        assert_eq!(ShortCode::parse_alias("-abc"), Err(AliasError::Edge));
        assert!(matches!(
            ShortCode::parse_alias("API"),
            Err(AliasError::Reserved(_))
        ));
        assert!(matches!(
            ShortCode::parse_alias("healthz"),
            Err(AliasError::Reserved(_))
        ));
    }

    #[test]
    fn urls_are_checked() {
        let p = policy();
        let ok = |s: &str| TargetUrl::parse(s, &p).map(|u| u.as_str().to_owned());
        assert_eq!(
            ok(" https://Example.com "),
            Ok("https://example.com/".into())
        );
        assert_eq!(
            ok("http://bücher.example/ä"),
            Ok("http://xn--bcher-kva.example/%C3%A4".into())
        );
        assert_eq!(ok(""), Err(UrlError::Empty));
        assert_eq!(ok("example.com"), Err(UrlError::Malformed));
        assert_eq!(ok("javascript:alert(1)"), Err(UrlError::Scheme));
        assert_eq!(ok("data:text/html,hi"), Err(UrlError::Scheme));
        assert_eq!(ok("file:///etc/passwd"), Err(UrlError::Scheme));
        assert_eq!(
            ok("https://user:pw@example.com"),
            Err(UrlError::Credentials)
        );
        assert_eq!(ok("http://sho.rt/abc"), Err(UrlError::SelfReference));
        assert_eq!(ok("https://SHO.RT./abc"), Err(UrlError::SelfReference));
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(ok(&long), Err(UrlError::TooLong(2048)));
    }

    #[test]
    fn another_port_on_the_same_host_is_another_site() {
        let p = UrlPolicy {
            max_len: 2048,
            own_url: Url::parse("http://127.0.0.1:8080").unwrap(),
        };
        assert!(TargetUrl::parse("http://127.0.0.1:9000/x", &p).is_ok());
        assert_eq!(
            TargetUrl::parse("http://127.0.0.1:8080/x", &p),
            Err(UrlError::SelfReference)
        );
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        let reason = DisableReason::parse("  phishing, report #12 ").unwrap();
        assert_eq!(reason.as_str(), "phishing, report #12");
        assert_eq!(DisableReason::parse("   "), Err(ReasonError::Length));
        assert_eq!(DisableReason::parse(" \t "), Err(ReasonError::Control));
        assert_eq!(DisableReason::parse("\u{b}-"), Err(ReasonError::Control));
        assert_eq!(DisableReason::parse_optional(" "), Ok(None));
        assert_eq!(
            DisableReason::parse_optional("\u{b}"),
            Err(ReasonError::Control)
        );
        assert_eq!(
            DisableReason::parse_optional(" spam")
                .unwrap()
                .unwrap()
                .as_str(),
            "spam"
        );
        let longest = "é".repeat(REASON_MAX_LEN);
        assert!(
            DisableReason::parse(&longest).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(
            DisableReason::parse(&format!("{longest}x")),
            Err(ReasonError::Length)
        );
        for forged in [
            "spam\nINFO link restored",
            "a\rb",
            "a\u{1b}[31mb",
            "a\u{85}b",
        ] {
            assert_eq!(DisableReason::parse(forged), Err(ReasonError::Control));
        }
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(s in "\\PC*") {
            let _ = TargetUrl::parse(&s, &policy());
            let _ = ShortCode::parse(&s);
            let _ = ShortCode::parse_alias(&s);
        }

        #[test]
        fn accepted_urls_round_trip(s in "https?://[a-z]{1,12}\\.[a-z]{2,5}(/[a-zA-Z0-9._~-]{0,20}){0,3}") {
            let url = TargetUrl::parse(&s, &policy()).unwrap();
            let again = TargetUrl::parse(url.as_str(), &policy()).unwrap();
            prop_assert_eq!(url, again);
        }

        #[test]
        fn accepted_aliases_round_trip(s in "[a-zA-Z0-9][a-zA-Z0-9_-]{1,62}[a-zA-Z0-9]") {
            if let Ok(code) = ShortCode::parse_alias(&s) {
                prop_assert_eq!(ShortCode::parse(code.as_str()), Some(code.clone()));
                prop_assert_eq!(code.as_str(), s.as_str());
            }
        }
    }
}
