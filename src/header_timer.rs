//! The timer of the header-read timeout: one per connection, moved only when it fires.
//!
//! hyper times the reading of each request's head with a fresh timer from its [`Timer`], made
//! when it starts reading and dropped once the head is in. With tokio's timer that is an entry
//! added to the runtime's timer wheel and removed again for every request, about 2% of a cached
//! redirect's cost. [`ConnectionTimer`] keeps one tokio timer per connection instead, set for
//! the first deadline asked of it. When it fires, the head it was set for has usually been read
//! long since: it then moves to the deadline of the head being read now. A busy connection
//! costs the wheel about one move per timeout period rather than two changes per request, and a
//! stalled head still ends its connection on time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The connection's one tokio timer, made on first use (inside the runtime).
type Alarm = Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>;

/// A hyper [`Timer`] for one connection; give every connection its own.
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    alarm: Alarm,
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline {
            deadline: deadline.into(),
            alarm: Arc::clone(&self.alarm),
        })
    }

    /// tokio's clock, which tests can pause.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A deadline kept by the connection's timer: ready once it has passed.
struct Deadline {
    deadline: tokio::time::Instant,
    alarm: Alarm,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // Only the connection's task polls its deadlines: the lock is never contended.
        let mut alarm = self.alarm.lock().unwrap_or_else(PoisonError::into_inner);
        let alarm = alarm.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if alarm.deadline() > deadline {
            // hyper's deadlines only move forward; should one not, it is still kept.
            alarm.as_mut().reset(deadline);
        }
        loop {
            ready!(alarm.as_mut().poll(cx));
            if alarm.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier head, read since: wait on for this one.
            alarm.as_mut().reset(deadline);
        }
    }
}

impl Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Whether `sleep` is ready when polled now.
    async fn is_ready(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn each_deadline_is_kept_by_the_one_timer() {
        let timer = ConnectionTimer::default();
        let start = timer.now();
        let mut first = timer.sleep_until(start + Duration::from_secs(10));
        assert!(!is_ready(&mut first).await);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!is_ready(&mut first).await);
        // The first head came in; the next one is read with a later deadline.
        drop(first);
        let mut second = timer.sleep(Duration::from_secs(10));
        assert!(!is_ready(&mut second).await);
        // The timer fires at the first deadline, which no longer counts...
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(!is_ready(&mut second).await, "ready 11 s in, deadline 14 s");
        // ...and then keeps the second.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!is_ready(&mut second).await, "ready 13 s in, deadline 14 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(is_ready(&mut second).await, "not ready at its deadline");
        // An earlier deadline than the timer's is kept too.
        let mut late = timer.sleep(Duration::from_secs(60));
        assert!(!is_ready(&mut late).await);
        let mut early = timer.sleep(Duration::from_secs(1));
        assert!(!is_ready(&mut early).await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(is_ready(&mut early).await, "not ready at its deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_wakes_its_task() {
        let timer = ConnectionTimer::default();
        let started = tokio::time::Instant::now();
        let mut first = timer.sleep(Duration::from_secs(1));
        assert!(!is_ready(&mut first).await);
        drop(first);
        // Awaited, not polled by hand: the timer must wake the task, first at the earlier
        // deadline (where it moves on), then at this one.
        timer.sleep(Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
