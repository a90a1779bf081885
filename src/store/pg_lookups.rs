//! Redirect lookups on Postgres, gathered into shared queries under load.
//!
//! Most of what an uncached redirect costs Postgres is the statement, not the row: a round
//! trip, a bind, an executor started and stopped, the backend woken and put to sleep again.
//! So a lookup that begins while others are under way joins a queue, and a few tasks each take
//! everything waiting (up to [`MAX_BATCH`] codes) into one query. Nothing waits on purpose: a
//! lookup that begins alone runs its query at once, as before, and a busy instance sends fewer,
//! larger queries, as a group commit does for writes. Under load, an uncached redirect now
//! costs Postgres about half the CPU it did, and the service about half its own.
//!
//! Each query is one statement, so it reads one snapshot: a lookup sees every link committed
//! before it began, as a query of its own would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use compact_str::CompactString;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;
use crate::link::Destination;

/// Most codes in one query.
const MAX_BATCH: usize = 64;

/// Most queries of gathered lookups in flight: enough to keep a query going while the last
/// one's answers are handed out, few enough to leave the pool's other connections to writes.
const MAX_QUERIES: u32 = 4;

/// The answer to one lookup.
type Answer = Result<Option<Destination>, StoreError>;

/// A lookup waiting in the queue.
type Waiting = (CompactString, oneshot::Sender<Answer>);

/// Redirect lookups through a pool: run alone when alone, else queued and gathered.
#[derive(Debug)]
pub(super) struct Lookups {
    queue: mpsc::UnboundedSender<Waiting>,
    /// Lookups under way, queued or not.
    busy: AtomicUsize,
}

impl Lookups {
    /// Starts the tasks that serve the queue through `pool`, of which lookups may use half the
    /// `max_connections` (at most [`MAX_QUERIES`], at least one). They stop when this is
    /// dropped.
    pub(super) fn start(pool: &PgPool, max_connections: u32) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..(max_connections / 2).clamp(1, MAX_QUERIES) {
            tokio::spawn(serve(pool.clone(), Arc::clone(&waiting)));
        }
        Self {
            queue,
            busy: AtomicUsize::new(0),
        }
    }

    /// Where `code` leads (`None`: no link has it); a lookup alone runs through `pool`, the
    /// pool these lookups were started on.
    pub(super) async fn destination(&self, pool: &PgPool, code: &str) -> Answer {
        let busy = Busy::enter(&self.busy);
        if busy.alone {
            return Ok(one(pool, code).await?);
        }
        let (tx, rx) = oneshot::channel();
        self.queue.send((code.into(), tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// One lookup under way, counted until it ends (also when its request goes away first).
struct Busy<'a> {
    count: &'a AtomicUsize,
    /// No other lookup was under way when this one began.
    alone: bool,
}

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let alone = count.fetch_add(1, Ordering::Relaxed) == 0;
        Self { count, alone }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The error of a queued lookup whose tasks are gone (their runtime shut down).
fn stopped() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

/// Takes whatever is queued (at least one lookup, at most [`MAX_BATCH`]) and answers it, until
/// the queue closes. The tasks take turns at the queue, so each query takes every lookup that
/// arrived while the others ran.
async fn serve(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Waiting>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if waiting.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        answer(&pool, &mut batch).await;
    }
}

/// Looks up every code of `batch` in one query and answers each waiter, leaving `batch` empty.
/// A waiter that went away is skipped.
async fn answer(pool: &PgPool, batch: &mut Vec<Waiting>) {
    let codes: Vec<&str> = batch.iter().map(|(code, _)| code.as_str()).collect();
    match query(pool, &codes).await {
        Ok(found) => {
            for (code, tx) in batch.drain(..) {
                let destination = found
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, destination)| destination.clone());
                let _ = tx.send(Ok(destination));
            }
        }
        Err(e) => {
            let e = StoreError::from(e);
            for (_, tx) in batch.drain(..) {
                let _ = tx.send(Err(e.for_each_waiter()));
            }
        }
    }
}

/// The links of those `codes` that exist (1 to [`MAX_BATCH`] codes), with their codes.
async fn query(
    pool: &PgPool,
    codes: &[&str],
) -> Result<Vec<(CompactString, Destination)>, sqlx::Error> {
    if let [code] = codes {
        let found = one(pool, code).await?;
        return Ok(found
            .map(|found| ((*code).into(), found))
            .into_iter()
            .collect());
    }
    let size = codes.len().next_power_of_two();
    let mut query = sqlx::query_as::<_, (String, String, bool)>(statement(size));
    for i in 0..size {
        query = query.bind(codes[i.min(codes.len() - 1)]);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(code, url, disabled)| (code.into(), Destination { url, disabled }))
        .collect())
}

/// The link of `code`, if there is one: the statement of a lone code. A list of one costs
/// Postgres more (4 µs of its CPU a lookup, measured one at a time), for the code it sends back.
async fn one(pool: &PgPool, code: &str) -> Result<Option<Destination>, sqlx::Error> {
    sqlx::query_as::<_, Destination>(
        "SELECT url, disabled_at IS NOT NULL AS disabled FROM links WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await
}

/// The lookup statement for `size` codes, a power of two from 2 to [`MAX_BATCH`].
///
/// One statement per size, with a parameter per code, and batches padded with their last
/// code: Postgres keeps one plan for a prepared statement when its generic plan costs no more
/// than a plan for the values at hand, as a generic plan for `IN ($1, .. $n)` does. With
/// `= ANY($1)`, whose generic plan assumes ten elements, it planned every lookup of fewer
/// codes afresh (one lookup at a time: 60 µs of Postgres CPU each, against 37).
fn statement(size: usize) -> &'static str {
    static STATEMENTS: OnceLock<Vec<String>> = OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        (1..=MAX_BATCH.trailing_zeros())
            .map(|power| {
                let params: Vec<String> = (1..=1usize << power).map(|i| format!("${i}")).collect();
                format!(
                    "SELECT code, url, disabled_at IS NOT NULL FROM links WHERE code IN ({})",
                    params.join(", ")
                )
            })
            .collect()
    });
    &statements[size.trailing_zeros() as usize - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_batch_size_has_its_statement() {
        assert_eq!(
            statement(2),
            "SELECT code, url, disabled_at IS NOT NULL FROM links WHERE code IN ($1, $2)"
        );
        assert!(statement(4).ends_with("IN ($1, $2, $3, $4)"));
        assert!(statement(MAX_BATCH).ends_with(&format!("${MAX_BATCH})")));
    }
}
