//! The default message id: a UUIDv7 from a per-thread monotonic generator.
//!
//! RFC 9562's UUIDv7 holds a 48-bit Unix time in milliseconds, then 74 bits the generator
//! chooses (around the version and variant bits). Here each thread keeps the millisecond it last
//! used and a 74-bit counter (the RFC's "monotonic random", its method 2): on a new millisecond
//! the counter starts at a random value below 2^73; within one millisecond it goes up by one.
//! So one thread's ids strictly increase, and ids of different threads are ordered by their
//! millisecond. A thread's random start is drawn once per millisecond (`fastrand`, seeded per
//! thread from the OS), not once per id as `uuid`'s `Uuid::new_v7` draws its random bits, and no
//! lock is shared between threads as `Uuid::now_v7`'s ordering needs.
//!
//! Unique across threads: two threads' ids of one millisecond collide only if their runs from
//! two random starts below 2^73 overlap, which for a million ids per millisecond is a chance of
//! about 2^-53.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The counter's random start stays below this, so it can count up within a millisecond
/// without leaving its 74 bits.
const COUNTER_START_BOUND: u128 = 1 << 73;
/// The counter's width: `rand_a` (12 bits) and `rand_b` (62 bits).
const COUNTER_BITS: u32 = 74;
const RAND_B_BITS: u32 = 62;

/// One thread's generator state: the millisecond last used and the counter's last value in it.
#[derive(Clone, Copy)]
struct Generator {
    millis: u64,
    counter: u128,
}

thread_local! {
    static GENERATOR: Cell<Generator> = const { Cell::new(Generator { millis: 0, counter: 0 }) };
}

/// A fresh UUIDv7 for the time `now`, hyphenated in lower case.
pub(super) fn new_message_id(now: SystemTime) -> Arc<str> {
    let millis = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    let uuid = next_uuid(millis);
    let mut buffer = uuid::Uuid::encode_buffer();
    Arc::from(&*uuid.hyphenated().encode_lower(&mut buffer))
}

/// The next UUIDv7 of this thread at `millis`.
fn next_uuid(millis: u64) -> uuid::Uuid {
    GENERATOR.with(|cell| {
        let last = cell.get();
        // A clock that went back keeps the last millisecond, so the ids keep increasing.
        let next = if millis > last.millis {
            Generator {
                millis,
                counter: fastrand::u128(..COUNTER_START_BOUND),
            }
        } else {
            next_in_the_same_millisecond(last)
        };
        cell.set(next);
        compose(next.millis, next.counter)
    })
}

/// The counter plus one; when it would leave its 74 bits (after 2^73 ids in one millisecond at
/// the least), the next millisecond with a fresh start.
fn next_in_the_same_millisecond(last: Generator) -> Generator {
    let counter = last.counter + 1;
    if counter >> COUNTER_BITS == 0 {
        Generator {
            millis: last.millis,
            counter,
        }
    } else {
        Generator {
            millis: last.millis + 1,
            counter: fastrand::u128(..COUNTER_START_BOUND),
        }
    }
}

/// The UUIDv7 of `millis` (its low 48 bits) and `counter` (74 bits): time, version 7, the
/// counter's top 12 bits (`rand_a`), the RFC 9562 variant, the counter's low 62 bits (`rand_b`).
/// Ordered as (`millis`, `counter`) is.
fn compose(millis: u64, counter: u128) -> uuid::Uuid {
    let millis = u128::from(millis) & ((1 << 48) - 1);
    let rand_a = counter >> RAND_B_BITS;
    let rand_b = counter & ((1 << RAND_B_BITS) - 1);
    uuid::Uuid::from_u128((millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_id_is_a_uuid_v7_of_its_millisecond() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let id = new_message_id(now);
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos), (1_700_000_000, 123_000_000));
    }

    #[test]
    fn one_threads_ids_strictly_increase_within_and_across_milliseconds() {
        let start = 1_700_000_000_000;
        let ids: Vec<uuid::Uuid> = (0..1_000)
            .flat_map(|ms| (0..50).map(move |_| start + ms))
            .map(next_uuid)
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_clock_that_goes_back_does_not_reorder_the_ids() {
        let first = next_uuid(1_800_000_000_000);
        let earlier = next_uuid(1_799_999_999_000);
        assert!(first < earlier);
    }

    #[test]
    fn a_full_counter_moves_to_the_next_millisecond() {
        let full = Generator {
            millis: 5,
            counter: (1 << COUNTER_BITS) - 1,
        };
        let next = next_in_the_same_millisecond(full);
        assert_eq!(next.millis, 6);
        assert!(compose(next.millis, next.counter) > compose(full.millis, full.counter));
    }

    #[test]
    fn ids_from_many_threads_are_unique_and_ordered_by_their_millisecond() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..5_000)
                        .map(|_| {
                            let now = SystemTime::now();
                            (now, new_message_id(now))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<(SystemTime, Arc<str>)> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let unique: HashSet<&str> = all.iter().map(|(_, id)| &**id).collect();
        assert_eq!(unique.len(), all.len());
        let millis = |time: &SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_millis();
        for (a_time, a_id) in &all {
            for (b_time, b_id) in all.iter().step_by(997) {
                if millis(a_time) < millis(b_time) {
                    assert!(a_id < b_id, "{a_id} made before {b_id}");
                }
            }
        }
    }
}
