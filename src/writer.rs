//! Group commit of creates: one task writes every new link, many per transaction.
//!
//! A create waits until the commit that holds its link is on disk, so a 201 still means "on
//! disk". While one transaction commits, the creates that arrive queue up and go together
//! in the next, so one commit serves many requests under load and nothing waits at low load.
//! Where a commit does not flush by itself (SQLite's `full`, see `Store::sync_commits`), a
//! second task flushes and answers the groups already committed while the writer commits the
//! next one: the disk's wait and the writer's work overlap instead of taking turns. Where it
//! does (Postgres, SQLite's `normal`), the writer answers a group at its commit.

use tokio::sync::{mpsc, oneshot};

use crate::link::Link;
use crate::store::{AnyStore, Store, StoreError};

/// Most links in one transaction.
const MAX_BATCH: usize = 512;
/// Creates that may wait for the writer before senders wait too (back-pressure).
const QUEUE: usize = 4096;

/// Outcome of one create: inserted, or its code was taken.
type Reply = Result<bool, StoreError>;

struct Pending {
    link: Link,
    reply: oneshot::Sender<Reply>,
}

/// The handle creates go through; the writer task stops when every handle is dropped.
#[derive(Clone)]
pub struct CreateWriter {
    queue: mpsc::Sender<Pending>,
}

impl CreateWriter {
    /// Starts the writer task on `store` (within a Tokio runtime).
    pub fn start(store: AnyStore) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, pending));
        Self { queue }
    }

    /// Inserts `link` and waits for its commit: `Ok(false)` if its code was taken.
    pub async fn insert(&self, link: Link) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { link, reply })
            .await
            .map_err(|_| StoreError::Config("the link writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Config("the link writer has stopped".into()))?
    }
}

async fn run(store: AnyStore, mut pending: mpsc::Receiver<Pending>) {
    // Unbounded, yet never longer than the creates in flight: each one waits for its answer.
    let syncing = store.defers_sync().then(|| {
        let (committed, to_answer) = mpsc::unbounded_channel();
        tokio::spawn(answer_when_synced(store.clone(), to_answer));
        committed
    });
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let group = write(&store, &mut batch).await;
        match &syncing {
            Some(committed) => {
                if committed.send(group).is_err() {
                    return;
                }
            }
            // The commit is durable: answered at once, without a second task's wake-up.
            None => group.answer(&Ok(())),
        }
    }
}

/// One committed (or failed) batch: its creates and what the store said.
struct Committed {
    replies: Vec<oneshot::Sender<Reply>>,
    outcome: Result<Vec<bool>, StoreError>,
}

impl Committed {
    /// Answers every create of the batch, once `synced` tells whether its commit is durable.
    fn answer(self, synced: &Result<(), StoreError>) {
        // A batch that failed reports its own error; one committed, the flush's.
        let outcome = self.outcome.and_then(|inserted| {
            synced
                .as_ref()
                .map(|()| inserted)
                .map_err(StoreError::for_each_waiter)
        });
        match outcome {
            Ok(inserted) => {
                for (reply, done) in self.replies.into_iter().zip(inserted) {
                    let _ = reply.send(Ok(done));
                }
            }
            Err(e) => {
                for reply in self.replies {
                    let _ = reply.send(Err(e.for_each_waiter()));
                }
            }
        }
    }
}

/// Writes one batch, in one transaction.
async fn write(store: &AnyStore, batch: &mut Vec<Pending>) -> Committed {
    // Two creates of one alias in the same batch: the store inserts the first and reports the
    // second as taken, exactly as if they had come one after the other.
    let links: Vec<Link> = batch.iter().map(|p| p.link.clone()).collect();
    metrics::counter!("shortener_create_batches_total").increment(1);
    let outcome = store.insert_batch(&links).await;
    Committed {
        replies: batch.drain(..).map(|p| p.reply).collect(),
        outcome,
    }
}

/// Answers committed batches once a flush that began after their commits has returned: one
/// flush for all the batches committed while the previous one ran.
async fn answer_when_synced(store: AnyStore, mut committed: mpsc::UnboundedReceiver<Committed>) {
    let mut groups = Vec::new();
    while committed.recv_many(&mut groups, MAX_BATCH).await > 0 {
        let synced = if groups.iter().any(|g| g.outcome.is_ok()) {
            store.sync_commits().await
        } else {
            Ok(())
        };
        for group in groups.drain(..) {
            group.answer(&synced);
        }
    }
}
