//! Per-address limits, kept in memory: how many devices one address may introduce a minute
//! (a MAC scan with curl must not grow the inventory without end), and a growing delay for an
//! address that keeps failing to log in (beside the fail2ban log lines, which ban it).

use polyprov_model::Mac;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window both limits count in.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once; past it, expired ones are dropped, and if none has expired a
/// new address is treated as over its limits (refused a new row, not delayed).
const MAX_ADDRESSES: usize = 16_384;
/// Failed logins in a window before the delay starts.
const FREE_FAILURES: u32 = 5;
/// The delay after the first failure past the free ones; it doubles with each, up to the cap.
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Entry {
    since: Instant,
    /// A set, not a list: with a generous limit one address may bring thousands in a minute,
    /// and every request of a device not yet in the inventory asks.
    new_devices: HashSet<Mac>,
    failures: u32,
    last_failure: Option<Instant>,
}

/// The per-address counts.
#[derive(Debug)]
pub(crate) struct AddressGuard {
    /// Changed by a settings reload (SIGHUP).
    new_devices_per_minute: std::sync::atomic::AtomicUsize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl AddressGuard {
    pub(crate) fn new(new_devices_per_minute: usize) -> AddressGuard {
        AddressGuard {
            new_devices_per_minute: std::sync::atomic::AtomicUsize::new(new_devices_per_minute),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, addr: IpAddr, now: Instant, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(&addr) && entries.len() >= MAX_ADDRESSES {
            entries.retain(|_, e| {
                now.duration_since(e.since) < WINDOW
                    || e.last_failure
                        .is_some_and(|t| now.duration_since(t) < WINDOW)
            });
            if entries.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        let e = entries.entry(addr).or_insert_with(|| Entry {
            since: now,
            new_devices: HashSet::new(),
            failures: 0,
            last_failure: None,
        });
        if now.duration_since(e.since) >= WINDOW {
            e.since = now;
            e.new_devices.clear();
        }
        Some(f(e))
    }

    /// Whether `addr` may introduce `mac` (a device the inventory does not hold yet) now: at
    /// most `new_devices_per_minute` different ones a minute.
    pub(crate) fn admit_new_device(&self, addr: IpAddr, mac: Mac) -> bool {
        let limit = self
            .new_devices_per_minute
            .load(std::sync::atomic::Ordering::Relaxed);
        self.with(addr, Instant::now(), |e| {
            if e.new_devices.contains(&mac) {
                true
            } else if e.new_devices.len() < limit {
                e.new_devices.insert(mac);
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }

    /// Sets the limit of new devices an address may introduce a minute.
    pub(crate) fn set_new_devices_per_minute(&self, n: usize) {
        self.new_devices_per_minute
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Notes a failed login from `addr`; returns how long to hold its answer.
    pub(crate) fn login_failed(&self, addr: IpAddr) -> Duration {
        let now = Instant::now();
        self.with(addr, now, |e| {
            if e.last_failure
                .is_none_or(|t| now.duration_since(t) >= WINDOW)
            {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last_failure = Some(now);
            match e.failures.checked_sub(FREE_FAILURES + 1) {
                None => Duration::ZERO,
                Some(n) => FIRST_DELAY
                    .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
                    .min(MAX_DELAY),
            }
        })
        .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_devices_are_capped_per_address_and_known_ones_pass() {
        let g = AddressGuard::new(3);
        let a = IpAddr::from([10, 0, 0, 1]);
        let macs: Vec<Mac> = (0..5)
            .map(|i| format!("0004f2aa81{i:02x}").parse().unwrap())
            .collect();
        assert!(macs[..3].iter().all(|m| g.admit_new_device(a, *m)));
        assert!(!g.admit_new_device(a, macs[3]));
        assert!(
            g.admit_new_device(a, macs[0]),
            "one already let in this minute"
        );
        assert!(g.admit_new_device(IpAddr::from([10, 0, 0, 2]), macs[4]));
    }

    #[test]
    fn failed_logins_earn_a_growing_capped_delay() {
        let g = AddressGuard::new(1);
        let a = IpAddr::from([10, 0, 0, 1]);
        let delays: Vec<u128> = (0..12).map(|_| g.login_failed(a).as_millis()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 0, 0, 250, 500, 1000, 2000, 4000, 5000, 5000]
        );
        assert_eq!(g.login_failed(IpAddr::from([10, 0, 0, 2])), Duration::ZERO);
    }
}
