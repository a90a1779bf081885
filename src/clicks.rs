//! Click counting off the redirect path: counted in memory, written in batches.
//!
//! A redirect only bumps the counter of its link, an atomic in the [`Redirect`] the cache hit
//! returned; a link's first click since the last flush also puts it on a list. A background
//! task takes that list about once a second, or sooner once the links on it hold 16 MiB
//! (`--click-flush-bytes`), and writes the counts; if the write fails they are kept and
//! retried, and a last flush runs at shutdown, so a graceful stop loses nothing.
//!
//! The store keeps flushed counts in a small table of pending clicks (cheap to write: it holds
//! only recently clicked codes; on Postgres a log, a row per code and flush), and the same
//! task moves them into the links about once a minute, alongside the flushes, in code order
//! and in chunks, so one pass rewrites each page of links at most once and creates are never
//! held up behind it for long.
//!
//! Both writes go in chunks with a pause after each ([`Pace`]): the database work of a flush
//! runs on a thread that shares the cores with the request workers, and a flush of 10k codes
//! in one statement kept the redirect worker off its core for milliseconds at a time, once
//! a second, which showed in the p99 of redirects. Chunks keep each burst short.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cache::Redirect;
use crate::store::{AnyStore, Store, StoreError};

/// How often pending clicks are moved into their links.
const ROLL_UP_EVERY: Duration = Duration::from_secs(60);

/// Pending counts moved per transaction.
const ROLL_UP_CHUNK: u32 = 1_000;

/// Links whose counts [`ClickCounter::take`] takes between two yields to the runtime.
const TAKE_CHUNK: usize = 1_000;

/// Counts written per transaction of a flush: at least this many, and a multiple of it (the
/// SQLite store keeps its statements of such sizes prepared) ...
pub(crate) const FLUSH_CHUNK_MIN: usize = 250;

/// ... and at most this many (one statement of the SQLite store's).
pub(crate) const FLUSH_CHUNK_MAX: usize = 1_000;
const _: () = assert!(FLUSH_CHUNK_MAX % FLUSH_CHUNK_MIN == 0);

/// Transactions a flush aims to stay within. Each chunk holds the writing thread for a while
/// (about 0.5 ms for 1,000 codes), on a core the requests share, so small chunks keep the tail
/// of redirects short; but every chunk is a commit, and commits cost throughput. Side by side,
/// 10,000 codes a second in chunks of 250 took the hot p99 from 1.0 to 0.75 ms at the same
/// rate, while 45,000 a second in chunks of 250 served 3-13% less than in chunks of 1,000.
const FLUSH_COMMITS: usize = 40;

/// The chunk size for a flush of `codes` counts.
fn flush_chunk(codes: usize) -> usize {
    codes
        .div_ceil(FLUSH_COMMITS)
        .next_multiple_of(FLUSH_CHUNK_MIN)
        .clamp(FLUSH_CHUNK_MIN, FLUSH_CHUNK_MAX)
}

/// How long the pass at shutdown may take; what is left waits for the next start.
const ROLL_UP_AT_STOP: Duration = Duration::from_secs(2);

/// At most this many chunks per pass (a million counts), so a fleet adding clicks as fast as
/// one instance moves them cannot keep a pass going for ever; the rest waits for the next pass.
const ROLL_UP_MAX_CHUNKS: usize = 1_000;

/// While the service runs, a chunk of a flush or roll-up is followed by a pause of this many
/// times its own duration: the writes take at most a quarter of the time they are spread
/// over, and the request workers get the core back between chunks.
const PAUSE_FACTOR: u32 = 3;

/// Whether a flush or roll-up pauses between chunks.
#[derive(Debug, Clone, Copy)]
pub enum Pace<'a> {
    /// While serving: pause after each chunk (`PAUSE_FACTOR`), until `stop` is
    /// cancelled (a stopping instance finishes the write at once).
    Spread(&'a CancellationToken),
    /// At a stop, where only finishing soon matters: no pauses.
    AtOnce,
}

impl Pace<'_> {
    /// Whether the service is stopping: a pass of the roll-up leaves the rest to the stop's.
    fn stopped(self) -> bool {
        matches!(self, Pace::Spread(stop) if stop.is_cancelled())
    }

    /// Waits after a chunk that began at `started`, as this pace asks.
    async fn after_chunk(self, started: Instant) {
        if let Pace::Spread(stop) = self {
            tokio::select! {
                () = tokio::time::sleep(started.elapsed() * PAUSE_FACTOR) => {}
                () = stop.cancelled() => {}
            }
        }
    }
}

/// About what the list of clicked links may hold, by default, before the flusher is woken
/// ahead of its interval (`--click-flush-bytes`). Each listed link is kept, URL and all, until
/// the flush takes its count, also when the cache has let it go: under uniform traffic over
/// links of 2,048-byte URLs, about 23,000 a second, that was some 50 MiB, growing with the
/// rate of distinct links clicked.
/// The benchmark's Zipf mix (45,000 links a second of 60-byte URLs) lists about 8 MiB a
/// second, so a flush a second stays the rule.
pub const DEFAULT_FLUSH_BYTES: usize = 16 << 20;

/// What a listed link holds besides its URL: its place on the list (32 bytes), the link
/// itself (64), the parts of its header value and the allocator's rounding.
const HELD_PER_LINK: usize = 128;

/// Clicks counted since the last flush.
#[derive(Debug)]
pub struct ClickCounter {
    /// The links clicked since the last flush: put here by their first click, which is the
    /// only one that takes this lock.
    clicked: Mutex<Clicked>,
    /// Counts a failed write left, for the next flush.
    unwritten: Mutex<Vec<(String, u64)>>,
    /// What the list may hold before the flusher takes it early; `usize::MAX` for no limit.
    held_limit: usize,
    /// Told (once a list) when the list has come to hold `held_limit`, so the flusher takes it
    /// early; a notice given while the flusher is busy waits for its next wait.
    full: Notify,
}

impl Default for ClickCounter {
    fn default() -> Self {
        Self::new(DEFAULT_FLUSH_BYTES)
    }
}

/// The links clicked since the last flush, each once, and about how much memory they hold.
/// The same code may be here more than once, in links loaded again (the cache off, or an
/// entry expired).
#[derive(Debug, Default)]
struct Clicked {
    links: Vec<(CompactString, Arc<Redirect>)>,
    /// Bytes, counted as [`HELD_PER_LINK`] plus the URL for each link.
    held: usize,
}

/// Locks `mutex`, also after a panic elsewhere: counts are plain numbers, always consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClickCounter {
    /// A counter whose flusher also runs once the links clicked since the last flush hold
    /// `flush_bytes` (0: only at its interval).
    pub fn new(flush_bytes: usize) -> Self {
        Self {
            clicked: Mutex::default(),
            unwritten: Mutex::default(),
            held_limit: if flush_bytes == 0 {
                usize::MAX
            } else {
                flush_bytes
            },
            full: Notify::new(),
        }
    }

    /// Counts one click on `link`, the link of `code`.
    pub fn record(&self, code: &str, link: &Arc<Redirect>) {
        // Only the flusher sets the count back to zero, after taking the list: the click that
        // finds zero is the one that must put the link on the (new) list.
        if link.unwritten_clicks.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut clicked = lock(&self.clicked);
            clicked.links.push((code.into(), Arc::clone(link)));
            let before = clicked.held;
            clicked.held = before.saturating_add(HELD_PER_LINK + link.location().len());
            if before < self.held_limit && clicked.held >= self.held_limit {
                drop(clicked);
                // Kept as a permit if the flusher is busy: it flushes again when done.
                self.full.notify_one();
            }
        }
    }

    /// Takes every pending count, one per code, sorted by code, leaving none.
    ///
    /// The list holds a reference to every link clicked since the last flush (about 45,000 a
    /// second under the benchmark's Zipf mix), so it is worked through [`TAKE_CHUNK`] links at a
    /// time: taking all their counts and dropping all their references at once (and so
    /// freeing the links the cache has evicted since) held the core for milliseconds, which
    /// showed in the p99 of redirects. The yield between chunks matters where the flusher is a
    /// task among the requests (a current-thread runtime); on a thread of its own, as the
    /// service runs it, the kernel time-slices it with the request workers.
    async fn take(&self) -> Vec<(String, u64)> {
        let mut clicked = {
            let mut clicked = lock(&self.clicked);
            // Room for as many links as last time, so the list does not grow step by step,
            // on the redirect path, during the next interval.
            let room = Vec::with_capacity(clicked.links.len());
            std::mem::replace(
                &mut *clicked,
                Clicked {
                    links: room,
                    held: 0,
                },
            )
            .links
        };
        let mut batch = std::mem::take(&mut *lock(&self.unwritten));
        batch.reserve(clicked.len());
        while !clicked.is_empty() {
            // From the end, so the rest of the list stays where it is.
            let start = clicked.len().saturating_sub(TAKE_CHUNK);
            batch.extend(clicked.drain(start..).filter_map(|(code, link)| {
                let n = link.unwritten_clicks.swap(0, Ordering::Relaxed);
                (n > 0).then(|| (code.into_string(), u64::from(n)))
            }));
            tokio::task::yield_now().await;
        }
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        batch.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        batch
    }

    /// Keeps counts a write could not take, for the next flush.
    fn restore(&self, counts: Vec<(String, u64)>) {
        lock(&self.unwritten).extend(counts);
    }

    /// Writes every pending count to `store`, in chunks, paced by `pace`; the number of codes
    /// written. On failure nothing is lost: the counts not yet written wait for the next flush.
    pub async fn flush(&self, store: &AnyStore, pace: Pace<'_>) -> Result<usize, StoreError> {
        let mut batch = self.take().await;
        if batch.is_empty() {
            return Ok(0);
        }
        let size = flush_chunk(batch.len());
        let mut written = 0;
        while written < batch.len() {
            let started = Instant::now();
            let chunk = &batch[written..batch.len().min(written + size)];
            if let Err(e) = store.add_clicks(chunk).await {
                metrics::counter!("shortener_click_flush_failures_total").increment(1);
                self.restore(batch.split_off(written));
                return Err(e);
            }
            metrics::counter!("shortener_clicks_flushed_total")
                .increment(chunk.iter().map(|(_, n)| n).sum());
            written += chunk.len();
            if written < batch.len() {
                pace.after_chunk(started).await;
            }
        }
        metrics::counter!("shortener_click_flushes_total").increment(1);
        Ok(written)
    }
}

/// Moves pending clicks into their links, chunk by chunk in code order, paced by `pace`,
/// until none are left past the last chunk; the number moved. A pass stops early when the
/// service stops (the pass at the stop takes over), and counts flushed meanwhile for codes it
/// has passed wait for the next pass.
pub async fn roll_up(store: &AnyStore, pace: Pace<'_>) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut from = String::new();
    for _ in 0..ROLL_UP_MAX_CHUNKS {
        if pace.stopped() {
            break;
        }
        let started = Instant::now();
        let chunk = store.roll_up_clicks(&from, ROLL_UP_CHUNK).await?;
        total += chunk.moved;
        match chunk.last {
            Some(last) if chunk.moved >= u64::from(ROLL_UP_CHUNK) => from = last,
            _ => break,
        }
        pace.after_chunk(started).await;
    }
    Ok(total)
}

/// Flushes `counter` every `interval` (and whenever its list of clicked links is full) until
/// `stop` is cancelled, then once more; moves the pending clicks into their links every
/// `ROLL_UP_EVERY`, and at the stop for up to `ROLL_UP_AT_STOP` (an instance restarted more
/// often than once a minute would otherwise leave pending clicks to pile up).
///
/// Flushes go on while a roll-up runs: with many links pending a pass takes seconds (12–14 s
/// for 530,000 codes), and flushes held back that long left counts that much older, to be
/// lost in a crash, and the list of clicked links growing all the while (about 20 MiB under
/// the benchmark's Zipf mix, holding links the cache had let go).
pub async fn run_flusher(
    counter: &ClickCounter,
    store: &AnyStore,
    interval: Duration,
    stop: CancellationToken,
) {
    tokio::join!(
        flush_every(counter, store, interval, &stop),
        roll_up_every(store, &stop)
    );
    if let Err(e) = counter.flush(store, Pace::AtOnce).await {
        tracing::error!(error = %e, "could not write click counts at shutdown");
    }
    // A pass cut short rolls back only its current chunk: those counts stay pending.
    match tokio::time::timeout(ROLL_UP_AT_STOP, roll_up(store, Pace::AtOnce)).await {
        Ok(Ok(moved)) => tracing::debug!(moved, "pending clicks moved into links"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not move pending clicks at shutdown"),
        Err(_) => tracing::debug!("pending clicks left for the next start"),
    }
}

/// Flushes `counter` every `interval`, and whenever its list of clicked links is full, until
/// `stop` is cancelled.
async fn flush_every(
    counter: &ClickCounter,
    store: &AnyStore,
    interval: Duration,
    stop: &CancellationToken,
) {
    // A zero period would panic in `interval`; the command line refuses it, library callers
    // get the smallest sensible one.
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = counter.full.notified() => {}
            () = stop.cancelled() => break,
        }
        if let Err(e) = counter.flush(store, Pace::Spread(stop)).await {
            tracing::warn!(error = %e, "could not write click counts; will retry");
        }
    }
}

/// Moves pending clicks into their links every [`ROLL_UP_EVERY`] until `stop` is cancelled.
async fn roll_up_every(store: &AnyStore, stop: &CancellationToken) {
    let first = tokio::time::Instant::now() + ROLL_UP_EVERY;
    let mut ticks = tokio::time::interval_at(first, ROLL_UP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        match roll_up(store, Pace::Spread(stop)).await {
            Ok(moved) => tracing::debug!(moved, "pending clicks moved into links"),
            Err(e) => tracing::warn!(error = %e, "could not move pending clicks; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Arc<Redirect> {
        let location = axum::http::HeaderValue::from_static("https://example.org/");
        Arc::new(Redirect::new(location))
    }

    /// A SQLite store in `dir` with `n` links, each with a click pending.
    async fn store_with_pending(dir: &tempfile::TempDir, n: usize) -> AnyStore {
        let url = format!("sqlite://{}", dir.path().join("links.db").display());
        let store = crate::store::connect(&url, &crate::store::PoolOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let links: Vec<_> = (0..n)
            .map(|i| crate::link::Link::unchecked(&format!("c{i:05}"), "https://example.org/"))
            .collect();
        store.insert_batch(&links).await.unwrap();
        let counts: Vec<_> = links.into_iter().map(|l| (l.code, 1)).collect();
        store.add_clicks(&counts).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_pass_moves_every_pending_count_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * ROLL_UP_CHUNK as usize + 7;
        let store = store_with_pending(&dir, n).await;
        assert_eq!(roll_up(&store, Pace::AtOnce).await.unwrap(), n as u64);
        assert_eq!(roll_up(&store, Pace::AtOnce).await.unwrap(), 0, "none left");
        assert_eq!(store.totals().await.unwrap().clicks, n as u64);
    }

    #[tokio::test]
    async fn a_stopping_service_leaves_the_pass_to_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_pending(&dir, 10).await;
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(roll_up(&store, Pace::Spread(&stop)).await.unwrap(), 0);
        assert_eq!(roll_up(&store, Pace::AtOnce).await.unwrap(), 10);
    }

    #[test]
    fn flushes_stay_within_their_commits_in_chunks_of_round_sizes() {
        for (codes, chunk) in [
            (0, 250),
            (1, 250),
            (10_000, 250),
            (10_001, 500),
            (30_000, 750),
            (45_000, 1_000),
            (1_000_000, 1_000),
        ] {
            assert_eq!(flush_chunk(codes), chunk, "{codes} codes");
        }
    }

    #[tokio::test]
    async fn counts_add_up_and_survive_a_restore() {
        let counter = ClickCounter::default();
        let abc = redirect();
        for _ in 0..3 {
            counter.record("abc", &abc);
        }
        counter.record("xyz", &redirect());
        let batch = counter.take().await;
        assert_eq!(batch, vec![("abc".into(), 3), ("xyz".into(), 1)]);
        assert!(counter.take().await.is_empty());
        counter.restore(batch);
        counter.record("abc", &abc);
        let again = counter.take().await;
        assert_eq!(again, vec![("abc".into(), 4), ("xyz".into(), 1)]);
    }

    #[tokio::test]
    async fn a_code_loaded_twice_is_counted_once_with_both_counts() {
        let counter = ClickCounter::default();
        let (first, second) = (redirect(), redirect());
        counter.record("abc", &first);
        counter.record("abc", &second);
        counter.record("abc", &second);
        assert_eq!(counter.take().await, vec![("abc".into(), 3)]);
    }

    #[tokio::test]
    async fn a_link_clicked_after_a_take_is_listed_again() {
        let counter = ClickCounter::default();
        let abc = redirect();
        counter.record("abc", &abc);
        assert_eq!(counter.take().await, vec![("abc".into(), 1)]);
        counter.record("abc", &abc);
        counter.record("abc", &abc);
        assert_eq!(counter.take().await, vec![("abc".into(), 2)]);
        assert!(counter.take().await.is_empty());
    }

    #[tokio::test]
    async fn a_list_longer_than_a_chunk_is_taken_whole() {
        let counter = ClickCounter::default();
        let links: Vec<_> = (0..2 * TAKE_CHUNK + 7)
            .map(|i| (format!("c{i:05}"), redirect()))
            .collect();
        for (i, (code, link)) in links.iter().enumerate() {
            for _ in 0..=i % 3 {
                counter.record(code, link);
            }
        }
        let batch = counter.take().await;
        assert_eq!(batch.len(), links.len());
        assert!(batch.windows(2).all(|w| w[0].0 < w[1].0), "sorted by code");
        for (i, (code, n)) in batch.iter().enumerate() {
            assert_eq!((code, *n), (&links[i].0, (i % 3 + 1) as u64));
        }
        assert!(counter.take().await.is_empty());
    }

    /// Links of the longest accepted URL, enough of them that clicking each once fills the
    /// list of clicked links, the last one to its limit.
    fn links_filling_the_list() -> Vec<Arc<Redirect>> {
        let url = format!("https://example.org/{}", "x".repeat(2_028));
        let n = DEFAULT_FLUSH_BYTES.div_ceil(HELD_PER_LINK + url.len());
        let location = axum::http::HeaderValue::try_from(url).unwrap();
        (0..n)
            .map(|_| Arc::new(Redirect::new(location.clone())))
            .collect()
    }

    /// Whether the counter has told its flusher that the list is full, since last asked.
    fn told_full(counter: &ClickCounter) -> bool {
        let full = std::pin::pin!(counter.full.notified());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        full.poll(&mut context).is_ready()
    }

    #[tokio::test]
    async fn a_list_holding_its_limit_is_told_full_once() {
        let counter = ClickCounter::default();
        let links = links_filling_the_list();
        let (last, rest) = links.split_last().unwrap();
        for _ in 0..2 {
            for (i, link) in rest.iter().enumerate() {
                counter.record(&format!("c{i:05}"), link);
                counter.record(&format!("c{i:05}"), link);
            }
            assert!(!told_full(&counter), "one link short of the limit");
            counter.record("last", last);
            assert!(told_full(&counter));
            counter.record("more", &redirect());
            assert!(!told_full(&counter), "told once a list");
            // A take empties the list, and the next one fills from nothing.
            assert_eq!(counter.take().await.len(), links.len() + 1);
        }
    }

    #[test]
    fn a_counter_without_a_limit_is_never_told_full() {
        let counter = ClickCounter::new(0);
        for (i, link) in links_filling_the_list().iter().enumerate() {
            counter.record(&format!("c{i:05}"), link);
        }
        assert!(!told_full(&counter));
    }

    #[tokio::test]
    async fn a_full_list_is_flushed_before_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_pending(&dir, 2).await;
        let counter = ClickCounter::default();
        let stop = CancellationToken::new();
        let flusher = run_flusher(&counter, &store, Duration::from_secs(3_600), stop.clone());
        let fill = async {
            // The interval's first tick is at once and may take the first list: the second
            // can only go early.
            for code in ["c00000", "c00001"] {
                let links = links_filling_the_list();
                let (last, rest) = links.split_last().unwrap();
                for (i, link) in rest.iter().enumerate() {
                    counter.record(&format!("f{i:05}"), link);
                }
                counter.record(code, last);
                let flushed = async {
                    while store.get(code).await.unwrap().unwrap().clicks < 2 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                let waited = tokio::time::timeout(Duration::from_secs(30), flushed).await;
                assert!(waited.is_ok(), "the list with {code} was not flushed");
            }
            stop.cancel();
        };
        tokio::join!(flusher, fill);
    }

    #[test]
    fn clicks_from_many_threads_are_all_counted() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let take = |counter: &ClickCounter| runtime.block_on(counter.take());
        let counter = Arc::new(ClickCounter::default());
        let links: Vec<_> = (0..8).map(|i| (format!("c{i}"), redirect())).collect();
        let mut total = 0;
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (counter, links) = (&counter, &links);
                scope.spawn(move || {
                    for i in 0..10_000 {
                        let (code, link) = &links[(i + t) % links.len()];
                        counter.record(code, link);
                    }
                });
            }
            // Takes while the threads click: every click lands in one take or a later one.
            for _ in 0..50 {
                total += take(&counter).iter().map(|(_, n)| n).sum::<u64>();
            }
        });
        total += take(&counter).iter().map(|(_, n)| n).sum::<u64>();
        assert_eq!(total, 40_000);
    }
}
