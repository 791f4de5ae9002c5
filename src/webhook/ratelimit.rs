//! The per-peer rate limit on reviews (`--peer-rate-limit`, `--peer-burst`): a GCRA limiter
//! (`governor`, the token bucket's exact equivalent) keyed by the source address of the TCP
//! connection. A review over its peer's limit is not refused: the admission layer answers it
//! at once as allowed with a warning (fail-open), so nsguard never becomes the reason a
//! deletion fails, while one client cannot make nsguard run preflights (and their API calls)
//! as fast as it can send reviews.
//!
//! The clock is a type parameter, so the limit is tested without sleeping.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Peers tracked at once. A flood from many addresses cannot grow the table past this: idle
/// peers (whose state is the same as no state) go first; if that is not enough, every peer is
/// forgotten. Forgetting only ever makes the limit more lenient, never a false deny.
pub const MAX_PEERS: usize = 4096;

/// Who sent a review: the connection's source address, and whether it presented a client
/// certificate verified against `--client-ca-file` (that is the API server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The TCP connection's source address.
    pub ip: IpAddr,
    /// A client certificate was presented and verified in the TLS handshake.
    pub verified: bool,
}

type Limiter<C> =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Rate limits keyed by peer, bounded in number.
pub struct PeerLimit<C: Clock = MonotonicClock> {
    quota: Quota,
    clock: C,
    max_peers: usize,
    limiter: arc_swap::ArcSwap<Limiter<C>>,
}

impl<C: Clock> std::fmt::Debug for PeerLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimit")
            .field("quota", &self.quota)
            .field("max_peers", &self.max_peers)
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// The key of a peer's limit. An IPv6 host usually owns a whole /64, so it gets one limit for
/// it rather than 2^64; an IPv4 address mapped into IPv6 is the IPv4 address.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl PeerLimit {
    /// `per_second` reviews a second per peer after a burst of `burst`; `None` (no limit)
    /// when either is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::with_clock(per_second, burst, MonotonicClock)
    }
}

impl<C: Clock + Clone> PeerLimit<C> {
    /// [`PeerLimit::new`] on the clock `clock`.
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Option<Self> {
        let quota =
            Quota::per_second(NonZeroU32::new(per_second)?).allow_burst(NonZeroU32::new(burst)?);
        let limiter = Limiter::hashmap_with_clock(quota, clock.clone());
        Some(Self {
            quota,
            clock,
            max_peers: MAX_PEERS,
            limiter: arc_swap::ArcSwap::from_pointee(limiter),
        })
    }

    /// Tracks at most `max_peers` peers (at least one).
    pub fn with_max_peers(mut self, max_peers: usize) -> Self {
        self.max_peers = max_peers.max(1);
        self
    }

    /// Whether `peer` may have a review decided now; counts it if so. Verified peers (the API
    /// server, with `--client-ca-file`) always may and are not tracked.
    pub fn admit(&self, peer: Peer) -> bool {
        if peer.verified {
            return true;
        }
        let limiter = self.limiter.load();
        let admitted = limiter.check_key(&key(peer.ip)).is_ok();
        if limiter.len() > self.max_peers {
            limiter.retain_recent();
            if limiter.len() > self.max_peers {
                self.limiter
                    .store(std::sync::Arc::new(Limiter::hashmap_with_clock(
                        self.quota,
                        self.clock.clone(),
                    )));
            }
        }
        admitted
    }
}

impl<C: Clock> PeerLimit<C> {
    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A clock the test sets, backwards too.
    #[derive(Clone, Default)]
    struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        fn set(&self, at: Duration) {
            self.0.store(
                u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    impl Clock for TestClock {
        type Instant = Duration;
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    fn limit(per_second: u32, burst: u32) -> (PeerLimit<TestClock>, TestClock) {
        let clock = TestClock::default();
        clock.set(Duration::from_secs(1000));
        let limit = PeerLimit::with_clock(per_second, burst, clock.clone()).unwrap();
        (limit, clock)
    }

    fn at(clock: &TestClock, since_start: Duration) {
        clock.set(Duration::from_secs(1000) + since_start);
    }

    fn peer(ip: &str) -> Peer {
        Peer {
            ip: ip.parse().unwrap(),
            verified: false,
        }
    }

    fn admitted<C: Clock + Clone>(limit: &PeerLimit<C>, p: Peer, n: usize) -> usize {
        (0..n).filter(|_| limit.admit(p)).count()
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(PeerLimit::new(0, 400).is_none());
        assert!(PeerLimit::new(100, 0).is_none());
        assert!(PeerLimit::new(100, 400).is_some());
    }

    #[test]
    fn a_burst_is_admitted_then_the_rest_until_it_refills() {
        let (limit, clock) = limit(100, 400);
        let api = peer("10.0.0.1");
        // The default lets a storm of 200 deletions, twice over, from one API server through.
        assert_eq!(admitted(&limit, api, 500), 400);
        // 100 a second: 50 more after half a second, not more.
        at(&clock, Duration::from_millis(500));
        assert_eq!(admitted(&limit, api, 80), 50);
        // Another peer has its own limit.
        assert_eq!(admitted(&limit, peer("10.0.0.2"), 10), 10);
        // Idle long enough, the burst is whole again, never more.
        at(&clock, Duration::from_secs(61));
        assert_eq!(admitted(&limit, api, 500), 400);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let (limit, clock) = limit(10, 2);
        at(&clock, Duration::from_secs(10));
        let p = peer("10.0.0.1");
        assert_eq!(admitted(&limit, p, 3), 2);
        at(&clock, Duration::from_secs(5));
        assert!(!limit.admit(p));
    }

    #[test]
    fn verified_peers_are_exempt_and_not_tracked() {
        let (limit, _clock) = limit(1, 1);
        let api = Peer {
            verified: true,
            ..peer("10.0.0.1")
        };
        assert_eq!(admitted(&limit, api, 1000), 1000);
        assert_eq!(limit.tracked(), 0);
        // The same address without a certificate is limited.
        assert_eq!(admitted(&limit, peer("10.0.0.1"), 5), 1);
    }

    #[test]
    fn the_table_is_capped_and_forgetting_is_lenient() {
        let (limit, clock) = limit(1, 5);
        let limit = limit.with_max_peers(3);
        // One busy peer, its burst spent.
        let busy = peer("10.0.0.1");
        assert_eq!(admitted(&limit, busy, 10), 5);
        // A flood of new addresses: the table never holds more than three.
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            at(&clock, Duration::from_millis(u64::from(i)));
            assert!(limit.admit(Peer {
                ip,
                verified: false
            }));
            assert!(limit.tracked() <= 3);
        }
        // Evicting only forgets: the busy peer, gone from the table, starts with its whole
        // burst (more lenient, never stricter).
        at(&clock, Duration::from_secs(2));
        assert_eq!(admitted(&limit, busy, 10), 5);
    }

    #[test]
    fn idle_peers_are_evicted_before_busy_ones() {
        let (limit, clock) = limit(1, 5);
        let limit = limit.with_max_peers(2);
        let (busy, idle) = (peer("10.0.0.1"), peer("10.0.0.2"));
        assert_eq!(admitted(&limit, busy, 10), 5);
        assert!(limit.admit(idle));
        // Ten seconds on, the idle peer's limit is as new (and the busy one's too, so spend
        // it again): the newcomer replaces the idle peer.
        at(&clock, Duration::from_secs(10));
        assert_eq!(admitted(&limit, busy, 4), 4);
        assert!(limit.admit(peer("10.0.0.3")));
        assert_eq!(limit.tracked(), 2);
        // The busy peer kept its (nearly spent) limit.
        assert_eq!(admitted(&limit, busy, 10), 1);
    }

    #[test]
    fn an_ipv6_host_gets_one_limit_for_its_64_and_mapped_ipv4_is_ipv4() {
        let (limit, _clock) = limit(1, 2);
        assert!(limit.admit(peer("2001:db8:1:2::1")));
        assert!(limit.admit(peer("2001:db8:1:2:ffff::9")));
        assert!(!limit.admit(peer("2001:db8:1:2::7")));
        assert!(limit.admit(peer("2001:db8:1:3::1")));
        assert_eq!(admitted(&limit, peer("192.0.2.1"), 2), 2);
        assert!(!limit.admit(peer("::ffff:192.0.2.1")));
    }
}
