//! What can go wrong while following the global order.

use switchyard_aggregates::store::StoreError;

/// A subscription could not read the store. Nothing was handed out and the subscription stands
/// where it stood: the next call reads again from there, so retrying (after a pause of the
/// caller's choosing) skips and repeats nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// Reading the global order (or its head, to start there) failed.
    #[error(
        "reading the global order after position {after} failed; the next call retries from there"
    )]
    Read {
        /// The position the subscription stands at: every event up to it was handed out or
        /// filtered out.
        after: u64,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}
