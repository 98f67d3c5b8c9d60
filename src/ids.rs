//! Object ids: Stripe's prefix followed by 24 base62 characters.
//!
//! The first 9 characters encode the creation time in milliseconds and the next 3 a
//! per-process counter, so ids created later sort later. That turns index inserts
//! into appends (see the storage figures in the docs); the remaining 12 characters
//! are random so ids cannot be guessed.

use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static LAST: AtomicU64 = AtomicU64::new(0);

fn push_base62(out: &mut String, mut value: u64, width: usize) {
    let mut buf = [b'0'; 16];
    for slot in buf[..width].iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).unwrap_or_default());
}

/// A monotonic (millisecond << 18 | counter) stamp: strictly increasing in this process.
fn next_stamp() -> u64 {
    let millis = u64::try_from(crate::clock::system_now_millis()).unwrap_or(0);
    let candidate = millis << 18;
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = if candidate > prev {
            candidate
        } else {
            prev + 1
        };
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

/// A fresh id such as `cus_` + 24 characters.
pub fn new_id(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 25);
    out.push_str(prefix);
    if !prefix.ends_with('_') {
        out.push('_');
    }
    let stamp = next_stamp();
    // 12 base62 characters hold 71 bits: the 62-bit stamp fits with room to spare.
    push_base62(&mut out, stamp, 12);
    random_tail(&mut out, 12);
    out
}

/// Random base62 characters, for secrets and the tail of ids.
pub fn random_tail(out: &mut String, len: usize) {
    // 12 base62 digits from each 128 random bits, rather than one bounded draw per
    // character: every confirmed payment makes seven ids. 62^12 is ~2^71.5, so the
    // remainder of a uniform 128-bit number is uniform to within 2^-56.
    let mut rng = rand::thread_rng();
    let mut left = 0;
    let mut bits: u128 = 0;
    for _ in 0..len {
        if left == 0 {
            bits = rng.gen();
            left = 12;
        }
        out.push(ALPHABET[(bits % 62) as usize] as char);
        bits /= 62;
        left -= 1;
    }
}

pub fn random_string(len: usize) -> String {
    let mut s = String::with_capacity(len);
    random_tail(&mut s, len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_24_base62_characters() {
        let id = new_id("cus");
        assert!(id.starts_with("cus_"));
        let tail = &id[4..];
        assert_eq!(tail.len(), 24);
        assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn later_ids_sort_later() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("pi")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    /// Every position of a random tail takes (nearly) every character: no position
    /// is left constant or starved by the way the random bits are split up.
    #[test]
    fn random_tails_vary_at_every_position() {
        let tails: Vec<String> = (0..4000).map(|_| random_string(30)).collect();
        for position in 0..30 {
            let seen: std::collections::HashSet<u8> =
                tails.iter().map(|t| t.as_bytes()[position]).collect();
            assert!(
                seen.len() >= 60,
                "position {position}: {} characters",
                seen.len()
            );
        }
    }
}
