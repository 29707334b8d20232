//! A node that stops answering on cue, so a test can kill it with calls in flight by
//! construction rather than by timing: after its first [`HOLD_AFTER`] deposits, its deposit
//! service holds every later one forever, alternately before the command runs (nothing stored)
//! and after its event was committed (stored, never acknowledged), and prints `holding` once
//! [`HELD_EACH`] calls of each kind are held.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use switchyard::Message;

use crate::children::report;

/// The environment variable asking a node to hold its deposits after this many.
pub(crate) const HOLD_AFTER: &str = "SY_HOLD_AFTER";

/// Calls of each kind held before the node prints `holding`.
pub(crate) const HELD_EACH: usize = 2;

type Reply = Pin<Box<dyn Future<Output = Message> + Send>>;

#[derive(Default)]
struct Held {
    served: AtomicU64,
    before: AtomicUsize,
    after: AtomicUsize,
    reported: AtomicBool,
}

impl Held {
    /// Counts one more held call (`before` or `after` the command ran), and prints `holding`
    /// the first time both kinds reach [`HELD_EACH`].
    fn hold(&self, after_commit: bool) -> std::future::Pending<Message> {
        let counter = if after_commit {
            &self.after
        } else {
            &self.before
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let (before, after) = (
            self.before.load(Ordering::SeqCst),
            self.after.load(Ordering::SeqCst),
        );
        if before >= HELD_EACH && after >= HELD_EACH && !self.reported.swap(true, Ordering::SeqCst)
        {
            report(&format!("holding before={before} after={after}"));
        }
        std::future::pending()
    }
}

/// `deposit`, held as described above after its first `hold_after` calls.
pub(crate) fn holding<F, Fut>(
    deposit: F,
    hold_after: u64,
) -> impl Fn(Message) -> Reply + Clone + Send + Sync + 'static
where
    F: Fn(Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Message> + Send + 'static,
{
    let held = Arc::new(Held::default());
    move |msg: Message| -> Reply {
        let (deposit, held) = (deposit.clone(), held.clone());
        Box::pin(async move {
            let n = held.served.fetch_add(1, Ordering::SeqCst);
            if n < hold_after {
                return deposit(msg).await;
            }
            if (n - hold_after).is_multiple_of(2) {
                return held.hold(false).await;
            }
            let reply = deposit(msg).await;
            if reply
                .response()
                .is_some_and(|response| response.is_success())
            {
                return held.hold(true).await;
            }
            reply
        })
    }
}
