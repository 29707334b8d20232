//! The memory store against a model: random sequences of acquisitions, saves, resets,
//! renewals, releases and clock moves by a few runners on a few projections, with tokens of
//! past generations kept and reused, as a runner that paused past its lease would.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use switchyard_projections::checkpoint::{
    Acquire, CheckpointError, CheckpointStore, LeaseToken, MemoryCheckpointStore,
};

const PROJECTIONS: [&str; 2] = ["orders", "balances"];
const HOLDERS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        projection: usize,
        holder: usize,
        ttl: u64,
    },
    Save {
        token: usize,
        position: u64,
    },
    Reset {
        token: usize,
    },
    Renew {
        token: usize,
        ttl: u64,
    },
    Release {
        token: usize,
    },
    Advance {
        seconds: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PROJECTIONS.len(), 0..HOLDERS.len(), 1..20u64).prop_map(|(projection, holder, ttl)| {
            Op::Acquire {
                projection,
                holder,
                ttl,
            }
        }),
        (any::<usize>(), 0..30u64).prop_map(|(token, position)| Op::Save { token, position }),
        any::<usize>().prop_map(|token| Op::Reset { token }),
        (any::<usize>(), 1..20u64).prop_map(|(token, ttl)| Op::Renew { token, ttl }),
        any::<usize>().prop_map(|token| Op::Release { token }),
        (0..15u64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// What an operation answered, compared between the store and the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Acquired(u64),
    Held(String),
    Done,
    LeaseLost,
    NotForward(u64),
    Changed(bool),
}

#[derive(Clone, Debug, Default)]
struct Row {
    position: u64,
    generation: u64,
    holder: Option<String>,
    until: u64,
}

/// The rules, written plainly: one live lease; a new generation unless the holder asks again
/// while live; fenced writes by the current token only; saves strictly forward.
#[derive(Default)]
struct Model {
    rows: BTreeMap<String, Row>,
}

impl Model {
    fn acquire(&mut self, projection: &str, holder: &str, now: u64, until: u64) -> Outcome {
        let row = self.rows.entry(projection.to_owned()).or_default();
        let live = row.holder.is_some() && row.until > now;
        if live && row.holder.as_deref() != Some(holder) {
            return Outcome::Held(row.holder.clone().unwrap());
        }
        if !live {
            row.generation += 1;
        }
        row.holder = Some(holder.to_owned());
        row.until = until;
        Outcome::Acquired(row.generation)
    }

    fn current(&mut self, token: &LeaseToken) -> Option<&mut Row> {
        self.rows.get_mut(&token.projection).filter(|row| {
            row.generation == token.generation && row.holder.as_deref() == Some(&token.holder)
        })
    }

    fn save(&mut self, token: &LeaseToken, position: u64) -> Outcome {
        match self.current(token) {
            None => Outcome::LeaseLost,
            Some(row) if position <= row.position => Outcome::NotForward(row.position),
            Some(row) => {
                row.position = position;
                Outcome::Done
            }
        }
    }

    fn reset(&mut self, token: &LeaseToken) -> Outcome {
        match self.current(token) {
            None => Outcome::LeaseLost,
            Some(row) => {
                row.position = 0;
                Outcome::Done
            }
        }
    }

    fn renew(&mut self, token: &LeaseToken, until: u64) -> Outcome {
        let row = self.current(token);
        let renewed = row.is_some();
        if let Some(row) = row {
            row.until = until;
        }
        Outcome::Changed(renewed)
    }

    fn release(&mut self, token: &LeaseToken) -> Outcome {
        let row = self.current(token);
        let released = row.is_some();
        if let Some(row) = row {
            row.holder = None;
        }
        Outcome::Changed(released)
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn fenced(result: Result<(), CheckpointError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(CheckpointError::LeaseLost { .. }) => Outcome::LeaseLost,
        Err(CheckpointError::NotForward { current, .. }) => Outcome::NotForward(current),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

async fn run(ops: Vec<Op>) {
    let store = MemoryCheckpointStore::new();
    let mut model = Model::default();
    let mut tokens: Vec<LeaseToken> = Vec::new();
    let mut now = 0;
    for op in ops {
        let token = |index: usize| tokens.get(index % tokens.len().max(1)).cloned();
        let (actual, expected) = match op {
            Op::Acquire {
                projection,
                holder,
                ttl,
            } => {
                let (projection, holder) = (PROJECTIONS[projection], HOLDERS[holder]);
                let actual = match store
                    .acquire(projection, holder, at(now), at(now + ttl))
                    .await
                {
                    Ok(Acquire::Acquired(lease)) => {
                        let generation = lease.token.generation;
                        tokens.push(lease.token);
                        Outcome::Acquired(generation)
                    }
                    Ok(Acquire::Held(held)) => Outcome::Held(held.holder),
                    other => panic!("acquire: {other:?}"),
                };
                (actual, model.acquire(projection, holder, now, now + ttl))
            }
            Op::Save {
                token: index,
                position,
            } => {
                let Some(token) = token(index) else { continue };
                (
                    fenced(store.save(&token, position).await),
                    model.save(&token, position),
                )
            }
            Op::Reset { token: index } => {
                let Some(token) = token(index) else { continue };
                (fenced(store.reset(&token).await), model.reset(&token))
            }
            Op::Renew { token: index, ttl } => {
                let Some(token) = token(index) else { continue };
                let actual = Outcome::Changed(store.renew(&token, at(now + ttl)).await.unwrap());
                (actual, model.renew(&token, now + ttl))
            }
            Op::Release { token: index } => {
                let Some(token) = token(index) else { continue };
                (
                    Outcome::Changed(store.release(&token).await.unwrap()),
                    model.release(&token),
                )
            }
            Op::Advance { seconds } => {
                now += seconds;
                continue;
            }
        };
        assert_eq!(actual, expected, "at {now}s");
        for projection in PROJECTIONS {
            let expected = model.rows.get(projection).map_or(0, |row| row.position);
            assert_eq!(
                store.load(projection).await.unwrap(),
                expected,
                "{projection}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_memory_store_follows_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(ops));
    }
}
