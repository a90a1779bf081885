//! Progress of long commands: a bar on a terminal, a plain line every few seconds otherwise
//! (logs and CI output stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports how many of `total` items are done.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

/// How often the plain-text mode prints a line.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// Starts reporting on `what` (e.g. "links"), of `total` when known.
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = if total.is_some() {
                "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ({per_sec}, {eta} left)"
            } else {
                "{elapsed_precise} {spinner} {pos} {msg} ({per_sec})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            what,
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// Counts `n` more items done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Ends the report with a final line.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{}", self.line());
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        match self.total {
            Some(total) => format!(
                "{} of {total} {} ({rate:.0}/s, {secs:.1} s)",
                self.done, self.what
            ),
            None => format!("{} {} ({rate:.0}/s, {secs:.1} s)", self.done, self.what),
        }
    }
}
