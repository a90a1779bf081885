//! A bounded load driver for the fault and soak tests: workers send a mix of redirects and
//! creates, record every acknowledged create, count failures and keep the last few for the
//! failure message, and sample latency per time window.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::client;

/// What to send.
#[derive(Clone)]
pub struct Mix {
    /// Base URL (`http://ADDR`) of the service or its balancer.
    pub base: String,
    /// Codes to redirect through, chosen in turn.
    pub codes: Arc<Vec<String>>,
    /// One request in this many is a create (1: creates only; 0: redirects only).
    pub create_every: u32,
    /// Hard bound on the requests of each worker.
    pub max_requests: u64,
    /// Hard bound on the run time.
    pub max_time: Duration,
    /// Length of one latency window.
    pub window: Duration,
}

/// What the workers saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Redirects answered with the expected status.
    pub redirects: u64,
    /// Creates answered 201: `(code, url)`.
    pub created: Vec<(String, String)>,
    /// Requests that failed (error or unexpected status).
    pub failed: u64,
    /// The last few failures, for the failure message.
    pub last_failures: VecDeque<String>,
    /// Latencies in microseconds, per window since the start.
    pub windows: Vec<Vec<u32>>,
}

impl Report {
    fn absorb(&mut self, other: Report) {
        self.redirects += other.redirects;
        self.created.extend(other.created);
        self.failed += other.failed;
        self.last_failures.extend(other.last_failures);
        while self.last_failures.len() > 20 {
            self.last_failures.pop_front();
        }
        if self.windows.len() < other.windows.len() {
            self.windows.resize_with(other.windows.len(), Vec::new);
        }
        for (mine, theirs) in self.windows.iter_mut().zip(other.windows) {
            mine.extend(theirs);
        }
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.last_failures.len() == 20 {
            self.last_failures.pop_front();
        }
        self.last_failures.push_back(what);
    }

    /// The `q` quantile (0..1) of each window's latencies, in milliseconds.
    pub fn quantiles_ms(&self, q: f64) -> Vec<f64> {
        self.windows
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut sorted = w.clone();
                sorted.sort_unstable();
                let i = ((sorted.len() - 1) as f64 * q).round() as usize;
                f64::from(sorted[i]) / 1000.0
            })
            .collect()
    }

    /// A summary for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{} redirects ok, {} creates ok, {} failed; last failures:\n  {}",
            self.redirects,
            self.created.len(),
            self.failed,
            Vec::from(self.last_failures.clone()).join("\n  ")
        )
    }
}

/// Running workers; [`Load::finish`] stops them and adds up what they saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Report>>,
}

impl Load {
    /// Starts `workers` workers sending `mix`.
    pub fn start(mix: &Mix, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers = (0..workers)
            .map(|id| {
                let (mix, stop) = (mix.clone(), stop.clone());
                tokio::spawn(async move { work(id, &mix, &stop, started).await })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers and returns what they saw.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        for worker in self.workers {
            report.absorb(worker.await.expect("load worker"));
        }
        report
    }
}

async fn work(id: usize, mix: &Mix, stop: &AtomicBool, started: Instant) -> Report {
    let client = client();
    let mut report = Report::default();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) && n < mix.max_requests && started.elapsed() < mix.max_time
    {
        n += 1;
        let create = mix.create_every == 1
            || mix.codes.is_empty()
            || (mix.create_every > 1 && n % u64::from(mix.create_every) == 0);
        let sent = Instant::now();
        let outcome = if create {
            let url = format!("https://example.com/load/{id}/{n}");
            match client
                .post(format!("{}/api/v1/links", mix.base))
                .json(&json!({ "url": url }))
                .send()
                .await
            {
                Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                    Ok(body) => {
                        let code = body["code"].as_str().unwrap_or_default().to_owned();
                        report.created.push((code, url));
                        Ok(())
                    }
                    Err(e) => Err(format!("create {url}: body: {e}")),
                },
                Ok(r) => Err(format!("create {url}: status {}", r.status())),
                Err(e) => Err(format!("create {url}: {e}")),
            }
        } else {
            let code = &mix.codes[(n as usize * 7 + id) % mix.codes.len()];
            match client.get(format!("{}/{code}", mix.base)).send().await {
                Ok(r) if r.status() == 302 => {
                    report.redirects += 1;
                    Ok(())
                }
                Ok(r) => Err(format!("GET /{code}: status {}", r.status())),
                Err(e) => Err(format!("GET /{code}: {e}")),
            }
        };
        let took = sent.elapsed();
        match outcome {
            Ok(()) => {
                let window = (started.elapsed().as_secs_f64() / mix.window.as_secs_f64()) as usize;
                if report.windows.len() <= window {
                    report.windows.resize_with(window + 1, Vec::new);
                }
                report.windows[window].push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Err(what) => {
                report.fail(format!("{:.3}s {what}", started.elapsed().as_secs_f64()));
                // A dead server refuses at once: do not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    report
}

/// Creates `n` links through `base` and returns their codes.
pub async fn seed(base: &str, n: usize) -> Vec<String> {
    let client = client();
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let r = client
            .post(format!("{base}/api/v1/links"))
            .json(&json!({ "url": format!("https://example.com/seed/{i}") }))
            .send()
            .await
            .expect("seed create");
        assert_eq!(r.status(), 201, "seeding links");
        let body: Value = r.json().await.expect("json");
        codes.push(body["code"].as_str().expect("code").to_owned());
    }
    codes
}
