//! The assigns the scheduler puts on every alarm's message.

use std::time::SystemTime;

use switchyard_messaging::Message;

/// The alarm's due time (a [`SystemTime`]), set when it is scheduled or retried.
pub const DISPATCH_AT: &str = "dispatch_at";
/// How many deliveries were made (a `u32`): 0 when scheduled, 1 during the first delivery.
pub const DISPATCH_ATTEMPTS: &str = "dispatch_attempts";
/// `true` when this delivery came later than the scheduler's tolerance after the due time
/// (scheduled in the past, or found overdue after a restart); absent otherwise.
pub const LATE: &str = "late";

/// The deliveries made so far, read from [`DISPATCH_ATTEMPTS`]; 0 when absent or unreadable.
pub fn dispatch_attempts(message: &Message) -> u32 {
    message
        .assigned::<u32>(DISPATCH_ATTEMPTS)
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// The due time read from [`DISPATCH_AT`].
pub fn dispatch_at(message: &Message) -> Option<SystemTime> {
    message.assigned::<SystemTime>(DISPATCH_AT).ok().flatten()
}

/// Whether the delivery was late, read from [`LATE`].
pub fn is_late(message: &Message) -> bool {
    message
        .assigned::<bool>(LATE)
        .ok()
        .flatten()
        .unwrap_or(false)
}
