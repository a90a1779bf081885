//! Click counting off the redirect path: counted in memory, written in batches.
//!
//! A redirect only bumps a counter in a map. A background task swaps the map out about once a
//! second and writes it in one transaction; if the write fails the counts are put back and
//! retried, and a last flush runs at shutdown, so a graceful stop loses nothing.
//!
//! The store keeps flushed counts in a small table of pending clicks (cheap to write: it holds
//! only recently clicked codes), and the same task moves them into the links about once a
//! minute, in code order and in chunks, so one pass rewrites each page of links at most once
//! and creates are never held up behind it for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::{AnyStore, Store, StoreError};

/// How often pending clicks are moved into their links.
const ROLL_UP_EVERY: Duration = Duration::from_secs(60);

/// Pending counts moved per transaction.
const ROLL_UP_CHUNK: u32 = 10_000;

/// How long the pass at shutdown may take; what is left waits for the next start.
const ROLL_UP_AT_STOP: Duration = Duration::from_secs(2);

/// At most this many chunks per pass, so a fleet adding clicks as fast as one instance moves
/// them cannot keep a pass going for ever; the rest waits for the next pass.
const ROLL_UP_MAX_CHUNKS: usize = 1_000;

/// Clicks counted since the last flush, by code.
#[derive(Debug, Default)]
pub struct ClickCounter {
    /// foldhash rather than SipHash: codes in here are only those of links that exist, so a
    /// fast hash is safe, and hashing is a measurable part of a redirect.
    pending: Mutex<HashMap<String, u64, foldhash::fast::RandomState>>,
}

impl ClickCounter {
    /// Counts one click on `code`.
    pub fn record(&self, code: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                pending.insert(code.to_owned(), 1);
            }
        }
    }

    /// Takes every pending count, sorted by code, leaving none, and room for as many codes
    /// as were taken (so the map does not grow step by step, on the redirect path, during the
    /// next interval).
    fn take(&self) -> Vec<(String, u64)> {
        let taken = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let room = HashMap::with_capacity_and_hasher(pending.len(), Default::default());
            std::mem::replace(&mut *pending, room)
        };
        let mut batch: Vec<_> = taken.into_iter().collect();
        batch.sort_unstable();
        batch
    }

    /// Puts counts back after a failed write.
    fn restore(&self, batch: Vec<(String, u64)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (code, n) in batch {
            *pending.entry(code).or_default() += n;
        }
    }

    /// Writes every pending count to `store`. On failure nothing is lost: the counts wait
    /// for the next flush.
    pub async fn flush(&self, store: &AnyStore) -> Result<usize, StoreError> {
        let batch = self.take();
        if batch.is_empty() {
            return Ok(0);
        }
        match store.add_clicks(&batch).await {
            Ok(()) => {
                metrics::counter!("shortener_click_flushes_total").increment(1);
                metrics::counter!("shortener_clicks_flushed_total")
                    .increment(batch.iter().map(|(_, n)| n).sum());
                Ok(batch.len())
            }
            Err(e) => {
                metrics::counter!("shortener_click_flush_failures_total").increment(1);
                self.restore(batch);
                Err(e)
            }
        }
    }
}

/// Moves pending clicks into their links, chunk by chunk, until none are left; the number
/// moved.
pub async fn roll_up(store: &AnyStore) -> Result<u64, StoreError> {
    let mut total = 0;
    for _ in 0..ROLL_UP_MAX_CHUNKS {
        let moved = store.roll_up_clicks(ROLL_UP_CHUNK).await?;
        total += moved;
        if moved < u64::from(ROLL_UP_CHUNK) {
            break;
        }
    }
    Ok(total)
}

/// Flushes `counter` every `interval` until `stop` is cancelled, then once more; moves the
/// pending clicks into their links every [`ROLL_UP_EVERY`], and at the stop for up to
/// [`ROLL_UP_AT_STOP`] (an instance restarted more often than once a minute would otherwise
/// leave pending clicks to pile up).
pub async fn run_flusher(
    counter: &ClickCounter,
    store: &AnyStore,
    interval: Duration,
    stop: CancellationToken,
) {
    // A zero period would panic in `interval`; the command line refuses it, library callers
    // get the smallest sensible one.
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_roll_up = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        if let Err(e) = counter.flush(store).await {
            tracing::warn!(error = %e, "could not write click counts; will retry");
        }
        if last_roll_up.elapsed() >= ROLL_UP_EVERY {
            last_roll_up = Instant::now();
            match roll_up(store).await {
                Ok(moved) => tracing::debug!(moved, "pending clicks moved into links"),
                Err(e) => tracing::warn!(error = %e, "could not move pending clicks; will retry"),
            }
        }
    }
    if let Err(e) = counter.flush(store).await {
        tracing::error!(error = %e, "could not write click counts at shutdown");
    }
    // A pass cut short rolls back only its current chunk: those counts stay pending.
    match tokio::time::timeout(ROLL_UP_AT_STOP, roll_up(store)).await {
        Ok(Ok(moved)) => tracing::debug!(moved, "pending clicks moved into links"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not move pending clicks at shutdown"),
        Err(_) => tracing::debug!("pending clicks left for the next start"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_survive_a_restore() {
        let counter = ClickCounter::default();
        for _ in 0..3 {
            counter.record("abc");
        }
        counter.record("xyz");
        let batch = counter.take();
        assert_eq!(batch, vec![("abc".into(), 3), ("xyz".into(), 1)]);
        assert!(counter.take().is_empty());
        counter.restore(batch);
        counter.record("abc");
        let again = counter.take();
        assert_eq!(again, vec![("abc".into(), 4), ("xyz".into(), 1)]);
    }
}
