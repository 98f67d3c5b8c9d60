//! `--rate-limit`: a token bucket per account, so integrations can test how they
//! handle Stripe's 429s (`code: rate_limit`, `Stripe-Should-Retry`).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::error::{ApiError, ErrorType};

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Allows `per_second` requests per second per account, with bursts of as many.
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            per_second,
            burst: per_second.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for the account or refuses with Stripe's 429.
    pub fn check(&self, account: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let (tokens, last) = buckets
            .entry(account.to_string())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(ApiError::new(
            429,
            ErrorType::InvalidRequestError,
            "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
        )
        .with_code("rate_limit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_and_recovers() {
        let limiter = RateLimiter::new(5.0);
        for _ in 0..5 {
            assert!(limiter.check("acct_a").is_ok());
        }
        let refused = limiter.check("acct_a").unwrap_err();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.code.as_deref(), Some("rate_limit"));
        assert!(
            limiter.check("acct_b").is_ok(),
            "accounts have their own buckets"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(limiter.check("acct_a").is_ok());
    }
}
