//! Failed attempts from one client address (an IPv4 address, an IPv6 /64) slow it down: after
//! [`FREE_FAILURES`] failures, each further one makes the address wait [`FIRST_DELAY`], doubled
//! with each failure up to [`MAX_DELAY`], before its next attempt is looked at (and before the
//! failure is answered). An address forgets its failures [`FORGET_AFTER`] after the last one.
//! At most [`MAX_ADDRESSES`] are remembered: when full, the forgotten ones go first, then the
//! longest quiet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::guard::ClientKey;

pub const FREE_FAILURES: u32 = 3;
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(8);
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
pub const MAX_ADDRESSES: usize = 10_000;

#[derive(Clone, Copy)]
struct Strikes {
    failures: u32,
    last: Instant,
    /// No attempt is looked at before this.
    until: Instant,
}

#[derive(Default)]
pub struct Penalties {
    by_address: Mutex<HashMap<ClientKey, Strikes>>,
}

impl Penalties {
    /// How long an attempt from `client` must wait before it is looked at.
    pub fn wait(&self, client: ClientKey, now: Instant) -> Duration {
        let map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&client)
            .map_or(Duration::ZERO, |s| s.until.saturating_duration_since(now))
    }

    /// Counts a failure from `client`; the delay it earns (zero for the first few).
    pub fn fail(&self, client: ClientKey, now: Instant) -> Duration {
        let mut map = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let key = client;
        if !map.contains_key(&key) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
            if map.len() >= MAX_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let s = map.entry(key).or_insert(Strikes {
            failures: 0,
            last: now,
            until: now,
        });
        if now.saturating_duration_since(s.last) >= FORGET_AFTER {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last = now;
        let delay = delay_after(s.failures);
        s.until = now + delay;
        delay
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_address.lock().unwrap().len()
    }
}

/// The delay earned by the `n`th failure in a row.
pub fn delay_after(n: u32) -> Duration {
    match n.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(doublings) => FIRST_DELAY
            .saturating_mul(1u32 << doublings.min(16))
            .min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn failures_cost_more_and_more_up_to_a_bound() {
        let delays: Vec<u64> = (1..=10)
            .map(|n| delay_after(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn per_address_forgotten_and_bounded() {
        let p = Penalties::default();
        let (a, b) = (
            ClientKey::of(Ipv4Addr::new(192, 0, 2, 1).into()),
            ClientKey::of(Ipv4Addr::new(192, 0, 2, 2).into()),
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            p.fail(a, t0);
        }
        assert_eq!(p.wait(a, t0), FIRST_DELAY);
        assert_eq!(p.wait(b, t0), Duration::ZERO);
        assert_eq!(p.wait(a, t0 + FIRST_DELAY), Duration::ZERO);
        // Quiet long enough: the count starts over.
        assert_eq!(p.fail(a, t0 + FORGET_AFTER), Duration::ZERO);
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            p.fail(ClientKey::of(Ipv4Addr::from(0x0a00_0000 + i).into()), t0);
        }
        assert!(p.len() <= MAX_ADDRESSES);
    }
}
