//! The per-peer rate limit on reviews (`--peer-rate-limit`, `--peer-burst`): a token bucket
//! per source address of the TCP connection. A review over its peer's limit is not refused:
//! the admission layer answers it at once as allowed with a warning (fail-open), so nsguard
//! never becomes the reason a deletion fails, while one client cannot make nsguard run
//! preflights (and their API calls) as fast as it can send reviews.
//!
//! Time is passed in by the caller, so the buckets are tested without sleeping.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Peers tracked at once. A flood from many addresses cannot grow the table past this: idle
/// peers (a full bucket is the same as no bucket) go first, then the least recently seen.
/// Evicting only ever makes the limit more lenient, never a false deny.
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

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by peer, bounded in number.
#[derive(Debug)]
pub struct PeerLimit {
    per_second: f64,
    burst: f64,
    max_peers: usize,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The key of a peer's bucket. An IPv6 host usually owns a whole /64, so it gets one bucket
/// for it rather than 2^64; an IPv4 address mapped into IPv6 is the IPv4 address.
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
        (per_second > 0 && burst > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            max_peers: MAX_PEERS,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Tracks at most `max_peers` peers (at least one).
    pub fn with_max_peers(mut self, max_peers: usize) -> Self {
        self.max_peers = max_peers.max(1);
        self
    }

    /// Whether `peer` may have a review decided at `now`; takes a token if so. Verified peers
    /// (the API server, with `--client-ca-file`) always may and are not tracked.
    pub fn admit(&self, peer: Peer, now: Instant) -> bool {
        if peer.verified {
            return true;
        }
        let key = key(peer.ip);
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = peers.get_mut(&key) {
            let refilled = self.refilled(bucket, now);
            bucket.at = now;
            if refilled >= 1.0 {
                bucket.tokens = refilled - 1.0;
                return true;
            }
            bucket.tokens = refilled;
            return false;
        }
        if peers.len() >= self.max_peers {
            peers.retain(|_, b| self.refilled(b, now) < self.burst);
            if peers.len() >= self.max_peers
                && let Some(oldest) = peers.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
            {
                peers.remove(&oldest);
            }
        }
        peers.insert(
            key,
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(ip: &str) -> Peer {
        Peer {
            ip: ip.parse().unwrap(),
            verified: false,
        }
    }

    fn admitted(limit: &PeerLimit, p: Peer, n: usize, now: Instant) -> usize {
        (0..n).filter(|_| limit.admit(p, now)).count()
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(PeerLimit::new(0, 400).is_none());
        assert!(PeerLimit::new(100, 0).is_none());
        assert!(PeerLimit::new(100, 400).is_some());
    }

    #[test]
    fn a_burst_is_admitted_then_the_rest_until_it_refills() {
        let limit = PeerLimit::new(100, 400).unwrap();
        let t0 = Instant::now();
        let api = peer("10.0.0.1");
        // The default lets a storm of 200 deletions, twice over, from one API server through.
        assert_eq!(admitted(&limit, api, 500, t0), 400);
        // 100 a second: 50 tokens after half a second, not more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(admitted(&limit, api, 80, t1), 50);
        // Another peer has its own bucket.
        assert_eq!(admitted(&limit, peer("10.0.0.2"), 10, t1), 10);
        // Idle long enough, the bucket is full again, never fuller.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(admitted(&limit, api, 500, t2), 400);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let limit = PeerLimit::new(10, 2).unwrap();
        let t0 = Instant::now() + Duration::from_secs(10);
        let p = peer("10.0.0.1");
        assert_eq!(admitted(&limit, p, 3, t0), 2);
        assert!(!limit.admit(p, t0 - Duration::from_secs(5)));
    }

    #[test]
    fn verified_peers_are_exempt_and_not_tracked() {
        let limit = PeerLimit::new(1, 1).unwrap();
        let now = Instant::now();
        let api = Peer {
            verified: true,
            ..peer("10.0.0.1")
        };
        assert_eq!(admitted(&limit, api, 1000, now), 1000);
        assert_eq!(limit.tracked(), 0);
        // The same address without a certificate is limited.
        assert_eq!(admitted(&limit, peer("10.0.0.1"), 5, now), 1);
    }

    #[test]
    fn the_table_is_capped_and_idle_peers_go_first() {
        let limit = PeerLimit::new(1, 5).unwrap().with_max_peers(3);
        let t0 = Instant::now();
        // One busy peer, its bucket empty.
        let busy = peer("10.0.0.1");
        assert_eq!(admitted(&limit, busy, 10, t0), 5);
        // A flood of new addresses: the table never holds more than three.
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let now = t0 + Duration::from_millis(u64::from(i));
            assert!(limit.admit(
                Peer {
                    ip,
                    verified: false
                },
                now
            ));
            assert!(limit.tracked() <= 3);
        }
        // Evicting only forgets: the busy peer, gone from the table, starts with a full
        // bucket (more lenient, never stricter).
        let later = t0 + Duration::from_secs(2);
        assert_eq!(admitted(&limit, busy, 10, later), 5);
    }

    #[test]
    fn idle_peers_are_evicted_before_busy_ones() {
        let limit = PeerLimit::new(1, 5).unwrap().with_max_peers(2);
        let t0 = Instant::now();
        let (busy, idle) = (peer("10.0.0.1"), peer("10.0.0.2"));
        assert_eq!(admitted(&limit, busy, 10, t0), 5);
        assert!(limit.admit(idle, t0));
        // Ten seconds on, the idle peer's bucket is full again (and the busy one's too,
        // so spend it again): the newcomer replaces the idle peer.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(admitted(&limit, busy, 4, t1), 4);
        assert!(limit.admit(peer("10.0.0.3"), t1));
        assert_eq!(limit.tracked(), 2);
        // The busy peer kept its (nearly empty) bucket.
        assert_eq!(admitted(&limit, busy, 10, t1), 1);
    }

    #[test]
    fn an_ipv6_host_gets_one_bucket_for_its_64_and_mapped_ipv4_is_ipv4() {
        let limit = PeerLimit::new(1, 2).unwrap();
        let now = Instant::now();
        assert!(limit.admit(peer("2001:db8:1:2::1"), now));
        assert!(limit.admit(peer("2001:db8:1:2:ffff::9"), now));
        assert!(!limit.admit(peer("2001:db8:1:2::7"), now));
        assert!(limit.admit(peer("2001:db8:1:3::1"), now));
        assert_eq!(admitted(&limit, peer("192.0.2.1"), 2, now), 2);
        assert!(!limit.admit(peer("::ffff:192.0.2.1"), now));
    }
}
