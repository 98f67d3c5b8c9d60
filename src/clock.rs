//! The one clock. Every timestamp and expiry is read through it, so each account's
//! time can be moved forward by a test helper instead of tests sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

/// Real unix seconds. Only this module reads the system clock.
pub fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Real unix milliseconds: webhook schedules, leases and attempt times, which run
/// on real time because receivers check signatures against their own clocks.
pub fn system_now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An account's current time: real time plus the offset its test helper moved
/// it by.
pub fn account_now(clock_offset: i64) -> i64 {
    system_now() + clock_offset
}
