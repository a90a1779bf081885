//! The service in a real browser: headless Chromium driven over WebDriver (`chromedriver` and
//! the `fantoccini` client) against the real `shortener` binary.
//!
//! It proves that a person can open `/`, shorten a URL, read the short link, see its QR code,
//! copy it with the copy button, follow it and land on the target page (served by this test);
//! that an invalid URL is explained next to its field with the input kept; that an unknown code
//! shows the 404 page; and that all of this works with the keyboard alone.
//!
//! WebDriver cannot read a response's status, but Chromium's console log can: it names every
//! page that came with an error status, so the tests check that the error pages are real 4xx
//! responses, and that no page logs a script error or a Content-Security-Policy violation.
//!
//! Every page is saved as a PNG in `$SHORTENER_SCREENSHOTS` (default: `target/screenshots`).
//! A failing step panics with what it saw: the page's URL and source, the browser's console,
//! the server's log tail (each response with its status) and chromedriver's last commands.
//! Chromedriver runs in its own process group, which a guard kills with every browser in it,
//! also when a step panics.
//!
//! Without chromedriver the tests are skipped with a message, except in CI (`CI` set), where
//! that is a failure.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode, Uri};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

/// The longest any one wait may take: a page load, an element, a process becoming ready.
const WAIT: Duration = Duration::from_secs(10);
/// The longest a whole journey may take, so a wedged browser cannot hang CI.
const JOURNEY_LIMIT: Duration = Duration::from_secs(120);
/// Title of the page the short links lead to.
const LANDING_TITLE: &str = "Landing page";
/// What the copy button's status line says once the link is on the clipboard.
const COPIED: &str = "Copied to the clipboard.";
/// Log lines kept per process for failure messages.
const LOG_KEPT: usize = 400;

/// The result of a step: on failure, a sentence saying what went wrong.
type Step<T = ()> = Result<T, String>;

/// Fails the current step with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Names the step that produced an error, so a failure reads as a sentence.
trait During<T> {
    /// Turns the error into "`what`: error".
    fn during(self, what: &str) -> Step<T>;
}

impl<T, E: std::fmt::Display> During<T> for Result<T, E> {
    fn during(self, what: &str) -> Step<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

#[tokio::test]
async fn a_visitor_shortens_copies_follows_and_meets_the_error_pages() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.run("pointer", pointer_journey(&harness)).await;
}

#[tokio::test]
async fn everything_works_with_the_keyboard_alone() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.run("keyboard", keyboard_journey(&harness)).await;
}

/// Mouse and typing: the form, the result page, the copy button, the redirect, the error
/// pages.
async fn pointer_journey(h: &Harness) -> Step {
    let target = h.landing.url();

    h.goto("/").await?;
    h.wait_for_title("Shorten a link").await?;
    h.screenshot("home").await?;

    h.submit_url(&target).await?;
    let short_url = h.read_result_page(&target).await?;
    h.screenshot("result").await?;

    // The button is hidden in the markup and shown by the script: seeing it proves the
    // script ran under the page's Content-Security-Policy.
    let copy = h.find("#copy").await?;
    h.wait_until("the copy button to show", async || {
        copy.is_displayed().await.ok()?.then_some(())
    })
    .await
    .map_err(|e| format!("{e}: /static/app.js did not run, or found no Clipboard API"))?;
    let clipboard_readable = h.grant("clipboard-read").await;
    copy.click().await.during("click the copy button")?;
    h.wait_for_copied().await?;
    h.screenshot("copied").await?;
    if clipboard_readable {
        let copied = h.clipboard().await?;
        ensure!(
            copied == short_url,
            "the clipboard holds {copied:?}, not the short link {short_url:?}"
        );
    } else {
        eprintln!(
            "note: chromedriver refused the clipboard-read permission; checked the status line only"
        );
    }

    h.find("#short-url")
        .await?
        .click()
        .await
        .during("click the short link")?;
    h.wait_for_landing(&target).await?;
    h.screenshot("landing").await?;

    // Invalid input: the form comes back with the reason next to the field and the input kept.
    h.goto("/").await?;
    h.submit_url("not a url").await?;
    h.expect_url_error("not a url", "not a valid URL").await?;
    h.expect_error_status("/", "4").await?;
    h.screenshot("invalid-url").await?;
    // From the error page itself: the field is filled, so replace its content.
    h.find("#url").await?.clear().await.during("clear #url")?;
    h.submit_url("javascript:alert(1)").await?;
    h.expect_url_error("javascript:alert(1)", "only http:// and https://")
        .await?;
    h.screenshot("invalid-scheme").await?;

    h.goto("/doesnotexist1").await?;
    h.wait_for_title("Link not found").await?;
    let heading = h.text("h1").await?;
    ensure!(
        heading == "Link not found",
        "the 404 page's heading is {heading:?}"
    );
    let body = h.text("main").await?;
    ensure!(
        body.contains("there is no link with this code"),
        "the 404 page does not say the code is unknown: {body:?}"
    );
    h.find("main a[href='/']").await?;
    h.expect_error_status("/doesnotexist1", "404").await?;
    h.screenshot("not-found").await?;
    h.expect_quiet_console().await
}

/// The same journey with nothing but Tab, Shift+Tab, Enter and typing, each key sent to
/// whatever has the focus (WebDriver actions, not element commands).
async fn keyboard_journey(h: &Harness) -> Step {
    let target = h.landing.url();

    h.goto("/").await?;
    h.wait_for_title("Shorten a link").await?;
    // `autofocus` puts the caret in the URL field on arrival.
    let focused = h.focused().await?;
    ensure!(
        focused == "#url",
        "on arrival the focus is on {focused}, not the URL field"
    );
    // Then from the top of the page, as someone who tabs through it.
    h.focus_page_top().await?;
    let presses = h.tab_to("#url", Direction::Forward).await?;
    eprintln!("keyboard: {presses} Tab press(es) from the top of / to the URL field");
    h.expect_focus_ring("#url").await?;
    h.screenshot("keyboard-home").await?;
    h.press(&target).await?;
    h.press(&Key::Enter).await?;
    let short_url = h.read_result_page(&target).await?;

    h.focus_page_top().await?;
    h.tab_to("#short-url", Direction::Forward).await?;
    h.expect_focus_ring("#short-url").await?;
    h.tab_to("#copy", Direction::Forward).await?;
    h.expect_focus_ring("#copy").await?;
    let clipboard_readable = h.grant("clipboard-read").await;
    h.press(&Key::Enter).await?;
    h.wait_for_copied().await?;
    h.screenshot("keyboard-copied").await?;
    if clipboard_readable {
        let copied = h.clipboard().await?;
        ensure!(
            copied == short_url,
            "the clipboard holds {copied:?} after Enter on the copy button, not {short_url:?}"
        );
    }
    h.tab_to("#short-url", Direction::Backward).await?;
    h.press(&Key::Enter).await?;
    h.wait_for_landing(&target).await?;
    h.screenshot("keyboard-landing").await?;

    // The error is reachable by keyboard too: the field keeps the focus and names the error.
    h.goto("/").await?;
    h.wait_for_title("Shorten a link").await?;
    h.press("not a url").await?;
    h.press(&Key::Enter).await?;
    h.expect_url_error("not a url", "not a valid URL").await?;
    let focused = h.focused().await?;
    ensure!(
        focused == "#url",
        "after a rejected submit the focus is on {focused}, not the URL field with the error"
    );
    h.screenshot("keyboard-invalid-url").await?;
    h.expect_quiet_console().await
}

/// Which way Tab moves the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Tab.
    Forward,
    /// Shift+Tab.
    Backward,
}

/// Everything one journey needs: the service, the landing page, chromedriver, one browser.
struct Harness {
    browser: Client,
    /// Every console entry read so far (reading the log drains it in the browser).
    console: Mutex<Vec<ConsoleEntry>>,
    shortener: Shortener,
    landing: Landing,
    driver: Chromedriver,
    shots: PathBuf,
}

impl Harness {
    /// Starts every piece, or returns `None` (with the reason printed) when chromedriver is
    /// missing outside CI.
    async fn start() -> Option<Self> {
        let Some(driver) = Chromedriver::start().await else {
            let reason = "chromedriver is not installed (apt-get install chromium chromium-driver)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{reason}: CI must run the browser tests"
            );
            // Straight to stderr: the harness keeps `eprintln!` of a passing test to itself.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
            return None;
        };
        let shortener = Shortener::start().await;
        let landing = Landing::start().await;
        let browser = match driver.browser().await {
            Ok(browser) => browser,
            Err(e) => panic!(
                "cannot start Chromium through chromedriver: {e}\n--- chromedriver log:\n{}",
                driver.log_tail()
            ),
        };
        let shots = screenshot_dir();
        eprintln!("screenshots: {}", shots.display());
        Some(Self {
            browser,
            console: Mutex::default(),
            shortener,
            landing,
            driver,
            shots,
        })
    }

    /// Runs `journey` within [`JOURNEY_LIMIT`]; on failure panics with the context, else
    /// closes the browser.
    async fn run(&self, name: &str, journey: impl Future<Output = Step>) {
        let outcome = match tokio::time::timeout(JOURNEY_LIMIT, journey).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("the journey took longer than {JOURNEY_LIMIT:?}")),
        };
        if let Err(failure) = outcome {
            let context = self.context(name).await;
            panic!("{name} journey failed: {failure}\n{context}");
        }
        // Quitting the session closes Chromium cleanly; the guard would kill it otherwise.
        let _ = tokio::time::timeout(WAIT, self.browser.clone().close()).await;
    }

    /// What the browser and the servers saw, for a failure message. Every probe is bounded:
    /// the browser may be the thing that broke.
    async fn context(&self, name: &str) -> String {
        let url = match tokio::time::timeout(WAIT, self.browser.current_url()).await {
            Ok(Ok(url)) => url.to_string(),
            Ok(Err(e)) => format!("(unknown: {e})"),
            Err(_) => "(unknown: the browser does not answer)".to_owned(),
        };
        let source = match tokio::time::timeout(WAIT, self.browser.source()).await {
            Ok(Ok(source)) => truncate(&source, 6000),
            Ok(Err(e)) => format!("(unavailable: {e})"),
            Err(_) => "(unavailable: the browser does not answer)".to_owned(),
        };
        let shot =
            match tokio::time::timeout(WAIT, self.screenshot(&format!("failed-{name}"))).await {
                Ok(Ok(path)) => path.display().to_string(),
                Ok(Err(e)) => e,
                Err(_) => "(none: the browser does not answer)".to_owned(),
            };
        let console = match tokio::time::timeout(WAIT, self.console()).await {
            Ok(Ok(entries)) => entries
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            Ok(Err(e)) => e,
            Err(_) => "(unavailable: the browser does not answer)".to_owned(),
        };
        let log = self.shortener.log_tail(40);
        let landing = self.landing.requests();
        let driver = self.driver.log_tail();
        format!(
            "--- browser at: {url}\n--- screenshot: {shot}\n--- page source:\n{source}\n\
             --- browser console:\n{console}\n\
             --- shortener log (last lines, each response with its status):\n{log}\n\
             --- landing server requests: {landing:?}\n\
             --- chromedriver log (last lines):\n{driver}"
        )
    }

    /// Opens `path` on the shortener.
    async fn goto(&self, path: &str) -> Step {
        let url = self.shortener.url(path);
        self.browser.goto(&url).await.during(&format!("open {url}"))
    }

    /// The element matching `css`, waiting for it to appear.
    async fn find(&self, css: &str) -> Step<fantoccini::elements::Element> {
        self.browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .during(&format!("find {css}"))
    }

    /// The visible text of the element matching `css`.
    async fn text(&self, css: &str) -> Step<String> {
        self.find(css)
            .await?
            .text()
            .await
            .during(&format!("read the text of {css}"))
    }

    /// Polls `probe` until it yields a value, for at most [`WAIT`]. Errors inside the probe
    /// (a stale element while a page loads) count as "not yet".
    async fn wait_until<T>(
        &self,
        what: &str,
        mut probe: impl AsyncFnMut() -> Option<T>,
    ) -> Step<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = probe().await {
                return Ok(value);
            }
            ensure!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what} in vain"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's title is `heading` plus the site name.
    async fn wait_for_title(&self, heading: &str) -> Step {
        let want = format!("{heading} · shortener");
        self.wait_until(&format!("the title {want:?}"), async || {
            (self.browser.title().await.ok()? == want).then_some(())
        })
        .await
    }

    /// Saves a PNG of the viewport as `NAME.png` in the screenshot folder.
    async fn screenshot(&self, name: &str) -> Step<PathBuf> {
        let png = self
            .browser
            .screenshot()
            .await
            .during(&format!("take the {name} screenshot"))?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).during(&format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Fills the URL field with `url` (on an empty form) and submits it with the button.
    async fn submit_url(&self, url: &str) -> Step {
        self.find("#url")
            .await?
            .send_keys(url)
            .await
            .during("type into the URL field")?;
        self.find("form button[type=submit]")
            .await?
            .click()
            .await
            .during("click Shorten")
    }

    /// On the result page: checks the short link, the target and the QR code; returns the
    /// short link.
    async fn read_result_page(&self, target: &str) -> Step<String> {
        self.wait_for_title("Your short link").await?;
        let link = self.find("#short-url").await?;
        let short_url = link.text().await.during("read the short link")?;
        let href = link.attr("href").await.during("read the link's href")?;
        ensure!(
            href.as_deref() == Some(short_url.as_str()),
            "the short link reads {short_url:?} but points to {href:?}"
        );
        let code = short_url
            .strip_prefix(&self.shortener.url("/"))
            .unwrap_or_default();
        ensure!(
            !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric()),
            "{short_url:?} is not a short link on {}",
            self.shortener.url("/")
        );
        let goes_to = self.text("p.target a").await?;
        ensure!(
            goes_to == target,
            "the result page says the link goes to {goes_to:?}, not {target:?}"
        );

        let qr = self.find("figure.qr svg").await?;
        let (_, _, width, height) = qr.rectangle().await.during("measure the QR code")?;
        ensure!(
            width >= 100.0 && height >= 100.0,
            "the QR code is {width}x{height} px: too small to scan"
        );
        let label = qr.attr("aria-label").await.during("read the QR label")?;
        ensure!(
            label.as_deref() == Some("QR code"),
            "the QR code has no accessible name (aria-label {label:?})"
        );
        self.find("figure.qr svg path").await?;
        Ok(short_url)
    }

    /// Waits for the copy button's status line to say the link was copied.
    async fn wait_for_copied(&self) -> Step {
        let status = self.find("#copy-status").await?;
        ensure!(
            status
                .attr("aria-live")
                .await
                .during("read aria-live")?
                .as_deref()
                == Some("polite"),
            "the copy status is not announced to screen readers (no aria-live)"
        );
        self.wait_until(&format!("the status {COPIED:?}"), async || {
            let text = status.text().await.ok()?;
            (text == COPIED).then_some(())
        })
        .await
        .map_err(|e| format!("{e} (the copy button gave no feedback, or said it failed)"))
    }

    /// Waits until the browser shows the landing page at `target`, and checks the landing
    /// server saw the request.
    async fn wait_for_landing(&self, target: &str) -> Step {
        self.wait_until(&format!("the landing page at {target}"), async || {
            let url = self.browser.current_url().await.ok()?;
            let title = self.browser.title().await.ok()?;
            (url.as_str() == target && title == LANDING_TITLE).then_some(())
        })
        .await?;
        ensure!(
            self.landing.requests().iter().any(|r| r == "GET /landing"),
            "the browser shows the landing page but the landing server saw no request"
        );
        Ok(())
    }

    /// Checks the form came back with `message` under the URL field, linked to it for
    /// assistive technology, and with `typed` still in the field.
    async fn expect_url_error(&self, typed: &str, message: &str) -> Step {
        self.wait_until(&format!("an error saying {message:?}"), async || {
            let error = self.browser.find(Locator::Css("#url-error")).await.ok()?;
            error.text().await.ok()?.contains(message).then_some(())
        })
        .await?;
        // "Next to the field": the message sits in the field's own wrapper, after the input.
        self.browser
            .find(Locator::XPath(
                "//div[contains(@class,'field')][input[@id='url']]/input[@id='url']\
                 /following-sibling::*[@id='url-error']",
            ))
            .await
            .during("find #url-error right after the URL field")?;
        let field = self.find("#url").await?;
        let kept = field.prop("value").await.during("read the field's value")?;
        ensure!(
            kept.as_deref() == Some(typed),
            "the field holds {kept:?} after the error, not what was typed ({typed:?})"
        );
        let described = field
            .attr("aria-describedby")
            .await
            .during("read aria-describedby")?;
        ensure!(
            described
                .as_deref()
                .is_some_and(|ids| ids.split_whitespace().any(|id| id == "url-error")),
            "the URL field is not described by its error (aria-describedby {described:?})"
        );
        let invalid = field
            .attr("aria-invalid")
            .await
            .during("read aria-invalid")?;
        ensure!(
            invalid.as_deref() == Some("true"),
            "the URL field is not marked invalid (aria-invalid {invalid:?})"
        );
        Ok(())
    }

    /// Every console entry of the session so far, oldest first.
    async fn console(&self) -> Step<Vec<ConsoleEntry>> {
        let fresh = self
            .browser
            .issue_cmd(SessionPost::browser_log())
            .await
            .during("read the browser's console log")?;
        let fresh: Vec<ConsoleEntry> = serde_json::from_value(fresh.clone())
            .map_err(|e| format!("unexpected console log {fresh}: {e}"))?;
        let mut console = self.console.lock().expect("console lock");
        console.extend(fresh);
        Ok(console.clone())
    }

    /// Checks the page at `path` came with an error status starting with `prefix` (Chromium
    /// logs "Failed to load resource" for each such response, the page itself included).
    async fn expect_error_status(&self, path: &str, prefix: &str) -> Step {
        let url = self.shortener.url(path);
        let mark = format!(
            "{url} - Failed to load resource: the server responded with a status of {prefix}"
        );
        self.wait_until(
            &format!("the console to report that {url} answered {prefix}…"),
            async || {
                let console = self.console().await.ok()?;
                console
                    .iter()
                    .any(|e| e.message.starts_with(&mark))
                    .then_some(())
            },
        )
        .await
    }

    /// Checks no page logged a script error or a Content-Security-Policy violation (network
    /// entries are statuses, checked where they are expected).
    async fn expect_quiet_console(&self) -> Step {
        let console = self.console().await?;
        let problems: Vec<String> = console
            .iter()
            .filter(|e| e.source != "network" && matches!(e.level.as_str(), "SEVERE" | "WARNING"))
            .map(ToString::to_string)
            .collect();
        ensure!(
            problems.is_empty(),
            "the browser console shows problems:\n{}",
            problems.join("\n")
        );
        Ok(())
    }

    /// Grants a permission to the current page's origin through the WebDriver Permissions
    /// extension; false when the driver refuses (then the test cannot read the clipboard).
    async fn grant(&self, permission: &'static str) -> bool {
        self.browser
            .issue_cmd(SessionPost::grant(permission))
            .await
            .is_ok()
    }

    /// What the page can read from the clipboard.
    async fn clipboard(&self) -> Step<String> {
        let value = self
            .browser
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 navigator.clipboard.readText().then(done, e => done({ error: String(e) }));",
                vec![],
            )
            .await
            .during("read the clipboard")?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("cannot read the clipboard: {value}"))
    }

    /// Sends `keys` as key presses to whatever has the focus, like a person typing.
    async fn press(&self, keys: &str) -> Step {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.browser
            .perform_actions(actions)
            .await
            .during(&format!("press {keys:?}"))
    }

    /// Presses Tab (Shift+Tab backward) until `target` (`#id`) has the focus; returns the
    /// number of presses. Fails after a bounded number of presses, listing where the focus
    /// went.
    async fn tab_to(&self, target: &str, direction: Direction) -> Step<usize> {
        let tab = char::from(Key::Tab);
        let shift = char::from(Key::Shift);
        let mut path = Vec::new();
        for presses in 1..=12 {
            let mut actions = KeyActions::new("keyboard".to_owned());
            if direction == Direction::Backward {
                actions = actions.then(KeyAction::Down { value: shift });
            }
            actions = actions
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab });
            if direction == Direction::Backward {
                actions = actions.then(KeyAction::Up { value: shift });
            }
            self.browser
                .perform_actions(actions)
                .await
                .during("press Tab")?;
            let focused = self.focused().await?;
            if focused == target {
                return Ok(presses);
            }
            path.push(focused);
        }
        Err(format!(
            "Tab never reached {target}; the focus went through {}",
            path.join(" → ")
        ))
    }

    /// A short description of the focused element: `#id`, else the tag and its text.
    async fn focused(&self) -> Step<String> {
        let value = self
            .browser
            .execute(
                "const e = document.activeElement;\
                 if (!e || e === document.body) return 'body';\
                 return e.id ? '#' + e.id : e.tagName.toLowerCase() + ' \"' + e.textContent.trim() + '\"';",
                vec![],
            )
            .await
            .during("ask which element has the focus")?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Moves the keyboard's starting point to the top of the document, as on a fresh visit
    /// without `autofocus`: the next Tab goes to the first focusable element.
    async fn focus_page_top(&self) -> Step {
        // A focusable, invisible anchor at the start of <body>: focusing then removing it
        // leaves the sequential-focus starting point at the top, which `blur()` alone does
        // not (Chromium resumes after the element that lost the focus).
        self.browser
            .execute(
                "const a = document.createElement('span');\
                 a.tabIndex = -1;\
                 document.body.prepend(a);\
                 a.focus();\
                 a.remove();",
                vec![],
            )
            .await
            .during("move the focus to the top of the page")?;
        Ok(())
    }

    /// Checks the focused element `css` shows a visible focus indicator.
    async fn expect_focus_ring(&self, css: &str) -> Step {
        let element = self.find(css).await?;
        let style = element
            .css_value("outline-style")
            .await
            .during("read the outline style")?;
        let width = element
            .css_value("outline-width")
            .await
            .during("read the outline width")?;
        ensure!(
            style != "none" && width != "0px",
            "{css} has the keyboard focus but no visible focus ring (outline {style} {width})"
        );
        Ok(())
    }
}

/// A `POST session/{id}/PATH` WebDriver command that fantoccini does not wrap: the W3C
/// "Set Permission" command (Permissions API extension) and chromedriver's "get log" for the
/// browser console (each call returns the entries since the last one).
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: serde_json::Value,
}

impl SessionPost {
    fn grant(permission: &str) -> Self {
        Self {
            path: "permissions",
            body: serde_json::json!({ "descriptor": { "name": permission }, "state": "granted" }),
        }
    }

    fn browser_log() -> Self {
        Self {
            path: "se/log",
            body: serde_json::json!({ "type": "browser" }),
        }
    }
}

impl WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.body.to_string()))
    }
}

/// One line of the browser console.
#[derive(Debug, Clone, serde::Deserialize)]
struct ConsoleEntry {
    /// SEVERE, WARNING, INFO, ...
    level: String,
    /// Where it came from: `network`, `javascript`, `security`, `console-api` ...
    source: String,
    /// The text, starting with the URL it concerns.
    message: String,
}

impl std::fmt::Display for ConsoleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.level, self.source, self.message)
    }
}

/// The real `shortener` binary on a fresh SQLite file, its stderr kept for failure messages.
struct Shortener {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: TempDir,
}

impl Shortener {
    /// Starts the binary on a free port and waits until `/readyz` answers 200.
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_shortener"))
            .env_clear()
            // Responses are logged at debug by the request layer, inside a debug span naming
            // the method, route and request id: failure messages show them.
            .env("RUST_LOG", "info,shortener::track=debug")
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
            .args(["--database-url", &database, "--metrics-listen", "off"])
            // One browser creates and looks up from one address; limits have tests of their own.
            .args(["--create-rate-limit", "0", "--not-found-rate-limit", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the shortener binary");
        let log = keep_lines(child.stderr.take().expect("stderr"));
        // From here on, Drop stops the process whatever happens.
        let mut shortener = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        // Port 0 leaves the choice to the kernel (no race with other tests); the ready line
        // says which port it got.
        let deadline = Instant::now() + WAIT;
        shortener.addr = loop {
            let ready = shortener
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|line| line.contains("shortener ready"))
                .cloned();
            if let Some(line) = ready {
                let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON log");
                break entry["listen"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("the ready line names the address");
            }
            let exited = shortener.child.try_wait().expect("poll the binary");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the shortener did not become ready (exit: {exited:?}); its log:\n{}",
                shortener.log_tail(LOG_KEPT)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let ready = shortener.url("/readyz");
        if let Err(e) = wait_for_ok(&ready).await {
            panic!(
                "{e}; the shortener's log:\n{}",
                shortener.log_tail(LOG_KEPT)
            );
        }
        shortener
    }

    /// `http://ADDR` + `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The last `lines` lines the binary logged.
    fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Shortener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page short links lead to: a tiny HTTP server of the test's own on loopback, which
/// records the requests it gets.
struct Landing {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Landing {
    /// Serves `GET /landing` (anything else is 404) on a free port.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the landing server");
        let addr = listener.local_addr().expect("landing address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock()
                    .expect("requests lock")
                    .push(format!("{method} {uri}"));
                if uri.path() == "/landing" {
                    let page = format!(
                        "<!doctype html><html lang=\"en\"><title>{LANDING_TITLE}</title>\
                         <h1>{LANDING_TITLE}</h1><p>You followed a short link.</p></html>"
                    );
                    (StatusCode::OK, axum::response::Html(page))
                } else {
                    (StatusCode::NOT_FOUND, axum::response::Html(String::new()))
                }
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            requests,
            server,
        }
    }

    /// The URL the test shortens.
    fn url(&self) -> String {
        format!("http://{}/landing", self.addr)
    }

    /// Every request so far, as `METHOD /path`.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// chromedriver in a process group of its own, so every Chromium it starts can be stopped
/// with it.
struct Chromedriver {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it is ready; `None` when it is not installed.
    async fn start() -> Option<Self> {
        let installed = Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !installed {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .arg("--log-level=INFO")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group (PGID = its PID): Chromium and its helpers join it, and Drop
            // signals the whole group.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, port, dir };
        if let Err(e) = wait_for_ok(&format!("{}/status", driver.url())).await {
            panic!("{e}; chromedriver's log:\n{}", driver.log_tail());
        }
        Some(driver)
    }

    /// The WebDriver endpoint.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new headless Chromium session with a fresh profile.
    async fn browser(&self) -> Step<Client> {
        let profile = self.dir.path().join("profile");
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": [
                    "--headless",
                    // Root cannot start Chromium with its sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            // WebDriver's own limits, so no single command outlives the test's waits.
            // Keep the console, for status checks and failure messages.
            "goog:loggingPrefs": { "browser": "ALL" },
            "timeouts": { "pageLoad": WAIT.as_millis(), "script": WAIT.as_millis(), "implicit": 0 },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal");
        };
        // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url())
            .await
            .during("open a WebDriver session")
    }

    /// The last lines of chromedriver's log (each cut short: screenshots are long lines).
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..]
            .iter()
            .map(|line| truncate(line, 300))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        // TERM first so Chromium can exit cleanly, then KILL whatever is left of the group.
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Keeps the last [`LOG_KEPT`] lines of `stream`, read on a thread of its own.
fn keep_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<VecDeque<String>>> {
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut sink = sink.lock().expect("log lock");
            if sink.len() == LOG_KEPT {
                sink.pop_front();
            }
            sink.push_back(line);
        }
    });
    lines
}

/// The last `n` of `lines`, one per line.
fn tail(lines: &Mutex<VecDeque<String>>, n: usize) -> String {
    let lines = lines.lock().expect("log lock");
    let skip = lines.len().saturating_sub(n);
    lines
        .iter()
        .skip(skip)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `GET url` until it answers 200, for at most [`WAIT`].
async fn wait_for_ok(url: &str) -> Step {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .during("build an HTTP client")?;
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = match client.get(url).send().await {
            Ok(response) if response.status() == 200 => return Ok(()),
            Ok(response) => response.status().to_string(),
            Err(e) => e.to_string(),
        };
        ensure!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {WAIT:?} (last: {seen})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port, for chromedriver (which cannot report a port it chose itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The folder for screenshots: `$SHORTENER_SCREENSHOTS`, else `target/screenshots` in the
/// crate; created if missing.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("SHORTENER_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create the screenshot folder {}: {e}", dir.display()));
    dir
}

/// `text` cut to at most `max` characters, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}… ({} more bytes)", &text[..end], text.len() - end),
        None => text.to_owned(),
    }
}
