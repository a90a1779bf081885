//! Group commit of creates: one task writes every new link, many per transaction.
//!
//! A create waits for the commit that holds its link, so a 201 still means "on disk". While
//! one transaction commits, the creates that arrive queue up and go together in the next, so
//! one fsync serves many requests under load and nothing waits at low load.

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
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&store, &mut batch).await;
    }
}

/// Writes one batch and answers every create in it.
async fn write(store: &AnyStore, batch: &mut Vec<Pending>) {
    // Two creates of one alias in the same batch: the store inserts the first and reports the
    // second as taken, exactly as if they had come one after the other.
    let links: Vec<Link> = batch.iter().map(|p| p.link.clone()).collect();
    metrics::counter!("shortener_create_batches_total").increment(1);
    match store.insert_batch(&links).await {
        Ok(inserted) => {
            for (p, done) in batch.drain(..).zip(inserted) {
                let _ = p.reply.send(Ok(done));
            }
        }
        Err(e) => {
            for p in batch.drain(..) {
                let _ = p.reply.send(Err(e.for_each_waiter()));
            }
        }
    }
}
