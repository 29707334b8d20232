//! Which incoming connections may start a handshake, so that a stalled or hostile peer
//! cannot deny service to others: a limit on handshakes under way in all and per source
//! address, slots that strangers (addresses no member announces) can never take, and a
//! budget of failed handshakes per source address, after which its connections are closed
//! on arrival, unanswered. It also tallies refusals and failures for a log line per interval
//! instead of one per connection.
//!
//! A source is an address as [`source_of`] groups it: an IPv4-mapped IPv6 address counts as
//! its IPv4 address, and IPv6 strangers count by their /64 network (one host usually holds a
//! whole /64, so it could otherwise take a fresh address for every connection). Members'
//! addresses count one by one, so a stranger sharing a member's /64 cannot spend its budget.
//!
//! Everything here takes the time as an argument: the rules are tested without a clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

/// The limits, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limits {
    /// Handshakes under way at once, in all.
    pub(crate) max_handshakes: usize,
    /// Handshakes under way at once from one source address.
    pub(crate) per_address: usize,
    /// Failed handshakes an address may have in a row before it is throttled.
    pub(crate) failure_burst: u32,
    /// After that, one more failure is allowed each this long.
    pub(crate) failure_refill: Duration,
}

impl Limits {
    /// The slots only members' addresses may take: a quarter.
    fn reserved(&self) -> usize {
        self.max_handshakes / 4
    }
}

/// The most source addresses remembered: an attacker with many addresses (IPv6) cannot grow
/// the table further; once it is full of addresses that still matter, new strangers are
/// refused.
const MAX_TRACKED: usize = 4_096;

/// Why a connection was closed on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Refusal {
    /// Every slot open to it is taken.
    Full,
    /// Its address has as many handshakes under way as it may.
    PerAddress,
    /// Its address failed too many handshakes lately.
    Throttled,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Full => "too many handshakes under way",
            Self::PerAddress => "too many handshakes from its address",
            Self::Throttled => "its address failed too many handshakes",
        }
    }
}

/// A connection admitted to its handshake: where from, and whether it took a member's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    ip: Option<IpAddr>,
    member: bool,
}

/// What one source address is doing.
#[derive(Debug)]
struct Source {
    under_way: usize,
    /// Failures it may still have before it is throttled (refilled over time).
    budget: f64,
    refilled: Instant,
}

/// The handshakes under way and what each source address did lately.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    /// Handshakes under way: of members' addresses, of strangers' (and of unknown origin).
    members_under_way: usize,
    strangers_under_way: usize,
    sources: HashMap<IpAddr, Source>,
    /// The addresses members announce.
    known: HashSet<IpAddr>,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            members_under_way: 0,
            strangers_under_way: 0,
            sources: HashMap::new(),
            known: HashSet::new(),
        }
    }

    /// Takes `known` as the addresses members announce.
    pub(crate) fn set_known(&mut self, known: impl IntoIterator<Item = IpAddr>) {
        self.known = known.into_iter().map(|ip| ip.to_canonical()).collect();
    }

    fn is_member(&self, ip: Option<IpAddr>) -> bool {
        ip.is_some_and(|ip| self.known.contains(&ip))
    }

    /// May a connection from `ip` (unknown for in-memory links) start a handshake `now`?
    /// When it may, it holds a slot until [`Admission::finished`].
    pub(crate) fn admit(&mut self, ip: Option<IpAddr>, now: Instant) -> Result<Admitted, Refusal> {
        let limits = self.limits;
        let ip = ip.map(|ip| ip.to_canonical());
        let member = self.is_member(ip);
        // Members count by their own address, strangers by their source's.
        let ip = if member { ip } else { ip.map(source_of) };
        let under_way = self.members_under_way + self.strangers_under_way;
        let open_to_strangers = limits.max_handshakes - limits.reserved();
        if under_way >= limits.max_handshakes
            || (!member && self.strangers_under_way >= open_to_strangers)
        {
            return Err(Refusal::Full);
        }
        if let Some(ip) = ip {
            if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_TRACKED {
                self.forget_settled(now);
                if self.sources.len() >= MAX_TRACKED && !member {
                    return Err(Refusal::Full);
                }
            }
            let source = self.sources.entry(ip).or_insert_with(|| Source {
                under_way: 0,
                budget: f64::from(limits.failure_burst),
                refilled: now,
            });
            refill(source, limits, now);
            if source.budget < 1.0 {
                return Err(Refusal::Throttled);
            }
            if source.under_way >= limits.per_address {
                return Err(Refusal::PerAddress);
            }
            source.under_way += 1;
        }
        if member {
            self.members_under_way += 1;
        } else {
            self.strangers_under_way += 1;
        }
        Ok(Admitted { ip, member })
    }

    /// The handshake of a connection [`admit`](Self::admit)ted from `ip` ended, `succeeded` or
    /// not (refused, malformed, timed out): its slot is free, and a failure spends one of its
    /// address's budget.
    pub(crate) fn finished(&mut self, admitted: Admitted, succeeded: bool, now: Instant) {
        // Counted where it was admitted, even if the members changed meanwhile.
        let under_way = if admitted.member {
            &mut self.members_under_way
        } else {
            &mut self.strangers_under_way
        };
        *under_way = under_way.saturating_sub(1);
        let limits = self.limits;
        if let Some(source) = admitted.ip.and_then(|ip| self.sources.get_mut(&ip)) {
            source.under_way = source.under_way.saturating_sub(1);
            refill(source, limits, now);
            if !succeeded {
                source.budget = (source.budget - 1.0).max(0.0);
            }
        }
    }

    /// Forgets the addresses with nothing under way and a full budget: they would be
    /// remembered as new.
    fn forget_settled(&mut self, now: Instant) {
        let limits = self.limits;
        self.sources.retain(|_, source| {
            refill(source, limits, now);
            source.under_way > 0 || source.budget < f64::from(limits.failure_burst)
        });
    }

    /// How many source addresses are remembered.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

/// The source an address counts as for the per-address limits and throttling: an IPv4-mapped
/// IPv6 address as its IPv4 address, any other IPv6 address as its /64 network (the host bits
/// zeroed), an IPv4 address as itself.
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::from(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Gives `source` back the failures allowed since it was last refilled.
fn refill(source: &mut Source, limits: Limits, now: Instant) {
    let elapsed = now.saturating_duration_since(source.refilled);
    source.refilled = now;
    let earned = elapsed.as_secs_f64() / limits.failure_refill.as_secs_f64().max(1e-9);
    source.budget = (source.budget + earned).min(f64::from(limits.failure_burst));
}

/// Counts events of a kind that would flood the log one line each, and says when to write
/// one line for all of them: at the first, then at most once per interval, with the counts
/// since the last line.
#[derive(Debug)]
pub(crate) struct Tally {
    interval: Duration,
    counts: BTreeMap<&'static str, u64>,
    /// The latest event's details.
    last: String,
    /// No line before this.
    quiet_until: Option<Instant>,
}

/// One log line's worth: how many of each, and the latest event's details.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) counts: BTreeMap<&'static str, u64>,
    pub(crate) last: String,
}

impl Report {
    /// The counts as `what: n` pairs, for the log line.
    pub(crate) fn counts(&self) -> String {
        self.counts
            .iter()
            .map(|(what, count)| format!("{what}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The events in all.
    pub(crate) fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl Tally {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            counts: BTreeMap::new(),
            last: String::new(),
            quiet_until: None,
        }
    }

    /// Counts one event of kind `what`, described by `last`; a report when one is due.
    pub(crate) fn note(
        &mut self,
        what: &'static str,
        last: String,
        now: Instant,
    ) -> Option<Report> {
        *self.counts.entry(what).or_default() += 1;
        self.last = last;
        self.flush(now)
    }

    /// The report of the events counted since the last, when one is due `now`.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<Report> {
        if self.counts.is_empty() || self.quiet_until.is_some_and(|until| now < until) {
            return None;
        }
        self.quiet_until = Some(now + self.interval);
        Some(Report {
            counts: std::mem::take(&mut self.counts),
            last: std::mem::take(&mut self.last),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_handshakes: 8,
            per_address: 3,
            failure_burst: 4,
            failure_refill: Duration::from_secs(1),
        }
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    /// One address holds at most its share of the slots; strangers together never take the
    /// quarter kept for members' addresses; a freed slot is free again.
    #[test]
    fn no_address_and_no_stranger_can_take_every_slot() {
        let now = Instant::now();
        let mut admission = Admission::new(limits());
        admission.set_known([ip(1).unwrap()]);
        let nines: Vec<_> = (0..3)
            .map(|_| admission.admit(ip(9), now).unwrap())
            .collect();
        assert_eq!(admission.admit(ip(9), now), Err(Refusal::PerAddress));
        let eights: Vec<_> = (0..3)
            .map(|_| admission.admit(ip(8), now).unwrap())
            .collect();
        assert_eq!(
            admission.admit(ip(7), now),
            Err(Refusal::Full),
            "strangers hold 6 of 8: the rest is the members'"
        );
        admission.admit(ip(1), now).unwrap();
        admission.admit(ip(1), now).unwrap();
        assert_eq!(admission.admit(ip(1), now), Err(Refusal::Full));
        admission.finished(nines[0], true, now);
        admission.admit(ip(1), now).unwrap();
        admission.finished(eights[0], true, now);
        let seven = admission.admit(ip(7), now).unwrap();
        // In-memory links have no address: only the total limit applies.
        admission.finished(seven, true, now);
        admission.admit(None, now).unwrap();
        assert_eq!(admission.admit(None, now), Err(Refusal::Full));
    }

    /// An address that keeps failing handshakes is throttled once its budget is spent, gets
    /// one more try per refill interval, and is back in full after a quiet while; successes
    /// cost nothing.
    #[test]
    fn failed_handshakes_throttle_their_address_only() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut admission = Admission::new(limits());
        let fail = |admission: &mut Admission, at| {
            let admitted = admission.admit(ip(9), at).unwrap();
            admission.finished(admitted, false, at);
        };
        for _ in 0..4 {
            fail(&mut admission, start);
        }
        assert_eq!(admission.admit(ip(9), start), Err(Refusal::Throttled));
        assert_eq!(admission.admit(ip(9), at(900)), Err(Refusal::Throttled));
        fail(&mut admission, at(1_000));
        assert_eq!(admission.admit(ip(9), at(1_500)), Err(Refusal::Throttled));
        for _ in 0..10 {
            let admitted = admission.admit(ip(2), start).unwrap();
            admission.finished(admitted, true, start);
        }
        fail(&mut admission, at(10_000));
        admission.admit(ip(9), at(10_000)).unwrap();
    }

    /// The table of addresses stays bounded: settled addresses are forgotten when it is
    /// full, and when it is full of addresses that still matter, new strangers are refused.
    #[test]
    fn the_table_of_source_addresses_stays_bounded() {
        let now = Instant::now();
        let mut admission = Admission::new(Limits {
            max_handshakes: usize::MAX,
            ..limits()
        });
        // One /64 each: addresses in one /64 count as one source.
        let addr = |i: usize| Some(IpAddr::from(((i as u128) << 64).to_be_bytes()));
        for i in 0..MAX_TRACKED {
            let admitted = admission.admit(addr(i), now).unwrap();
            admission.finished(admitted, true, now);
        }
        admission.admit(addr(MAX_TRACKED), now).unwrap();
        assert_eq!(admission.tracked(), 1, "settled addresses were forgotten");
        for i in 0..MAX_TRACKED {
            let _ = admission.admit(addr(MAX_TRACKED + 1 + i), now);
        }
        assert_eq!(admission.admit(addr(usize::MAX), now), Err(Refusal::Full));
        assert!(admission.tracked() <= MAX_TRACKED);
    }

    /// An IPv4-mapped IPv6 address counts as its IPv4 address, and the addresses of one IPv6
    /// /64 count as one source, so a host cannot escape the limits by changing addresses; a
    /// member's address keeps its own count.
    #[test]
    fn mapped_addresses_and_ipv6_networks_count_as_one_source() {
        let now = Instant::now();
        let mut admission = Admission::new(Limits {
            max_handshakes: 64,
            ..limits()
        });
        let v6 = |host: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 7, host]));
        let mapped = Some(IpAddr::from(
            std::net::Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped(),
        ));
        for _ in 0..2 {
            admission.admit(ip(9), now).unwrap();
        }
        admission.admit(mapped, now).unwrap();
        assert_eq!(admission.admit(mapped, now), Err(Refusal::PerAddress));
        assert_eq!(admission.admit(ip(9), now), Err(Refusal::PerAddress));
        for host in 1..=3 {
            admission.admit(v6(host), now).unwrap();
        }
        assert_eq!(
            admission.admit(v6(4), now),
            Err(Refusal::PerAddress),
            "same /64"
        );
        admission
            .admit(Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])), now)
            .unwrap();
        // A member in that /64 keeps its own count, also when announced as IPv4-mapped.
        admission.set_known([v6(5).unwrap()]);
        admission.admit(v6(5), now).unwrap();
        let member_v4 = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        admission.set_known([member_v4]);
        for _ in 0..3 {
            admission.admit(ip(1), now).unwrap();
        }
        assert_eq!(admission.admit(ip(1), now), Err(Refusal::PerAddress));
    }

    /// A flood of events makes one report at once, then one per interval with the counts
    /// since the last.
    #[test]
    fn a_flood_of_events_is_reported_once_per_interval_with_counts() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut tally = Tally::new(Duration::from_secs(10));
        let first = tally.note("full", "from a".into(), start).unwrap();
        assert_eq!(first.total(), 1);
        let mut reports = 0;
        for i in 0..50_000_u64 {
            let kind = if i % 2 == 0 { "full" } else { "throttled" };
            if tally.note(kind, format!("from {i}"), at(i / 10)).is_some() {
                reports += 1;
            }
        }
        assert_eq!(reports, 0, "nothing more within the interval");
        let report = tally.flush(at(10_000)).unwrap();
        assert_eq!(report.total(), 50_000);
        assert_eq!(report.counts(), "full: 25000, throttled: 25000");
        assert_eq!(report.last, "from 49999");
        assert_eq!(tally.flush(at(30_000)), None, "nothing new, nothing said");
    }
}
