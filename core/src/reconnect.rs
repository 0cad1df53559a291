//! The reconnection policy of every client face: exponential backoff with jitter between
//! attempts, and which failures are worth retrying. Sans-IO: the caller waits the delays
//! (so tests drive it with a fake clock) and supplies the randomness if it wants to.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long to wait between reconnection attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay is random, up to this: clients that lost the same server at once
    /// do not all come back at once.
    pub initial_delay: Duration,
    /// Each later delay is the previous one times this ...
    pub factor: f64,
    /// ... up to this.
    pub max_delay: Duration,
    /// The random fraction of each later delay: 0.5 waits between half of it and all of it.
    pub jitter: f64,
    /// The most failed attempts in a row before giving up (None: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffPolicy {
    /// websockets' values: up to 5 s, then ×1.618 up to 90 s, half of each delay random.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(5),
            factor: 1.618,
            max_delay: Duration::from_secs(90),
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl BackoffPolicy {
    /// Checks the values: a factor of at least 1, a jitter between 0 and 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(Error::Config(format!(
                "the backoff factor must be at least 1, not {}",
                self.factor
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::Config(format!(
                "the backoff jitter must be between 0 and 1, not {}",
                self.jitter
            )));
        }
        Ok(())
    }
}

/// The delays of one run of failed attempts; start a new one after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    /// The last delay before jitter, in seconds.
    delay: f64,
}

impl Backoff {
    /// A run of attempts under `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
            delay: 0.0,
        }
    }

    /// How many attempts failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt, after a failure; `None` once `max_attempts`
    /// attempts failed.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_with(rand::random::<f64>())
    }

    /// [`Backoff::next_delay`] with `random` (uniform in [0, 1)) as the randomness.
    pub fn next_delay_with(&mut self, random: f64) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self
            .policy
            .max_attempts
            .is_some_and(|most| self.failures >= most)
        {
            return None;
        }
        let random = random.clamp(0.0, 1.0);
        let max = self.policy.max_delay.as_secs_f64();
        let seconds = if self.failures == 1 {
            self.delay = self.policy.initial_delay.as_secs_f64();
            random * self.delay.min(max)
        } else {
            self.delay = (self.delay * self.policy.factor).min(max);
            self.delay * (1.0 - self.policy.jitter * random)
        };
        Some(Duration::from_secs_f64(seconds))
    }
}

impl Error {
    /// Whether connecting again may succeed: network failures, timeouts, TLS failures (as
    /// websockets, where they are `OSError`s), a connection closed during the handshake,
    /// and 5xx answers from the server or the proxy. Never a 4xx, an invalid URI or proxy,
    /// or any other handshake error: the same request would fail the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(_)
            | Error::Timeout(_)
            | Error::Tls(_)
            | Error::UntrustedCertificate(_)
            | Error::InvalidMessage(_) => true,
            Error::InvalidStatus(response) | Error::ProxyStatus(response) => response.status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::Response;

    fn policy(max_attempts: Option<u32>) -> BackoffPolicy {
        BackoffPolicy {
            initial_delay: Duration::from_secs(2),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            max_attempts,
        }
    }

    /// Runs attempts on a fake clock (milliseconds) that only the delays advance: the times
    /// at which each attempt after the first starts, with `random` as the randomness.
    fn schedule(policy: BackoffPolicy, random: f64, attempts: usize) -> Vec<u128> {
        let mut clock = 0u128;
        let mut backoff = Backoff::new(policy);
        let mut times = Vec::new();
        for _ in 0..attempts {
            match backoff.next_delay_with(random) {
                Some(delay) => {
                    clock += delay.as_millis();
                    times.push(clock);
                }
                None => break,
            }
        }
        times
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap() {
        // No randomness taken off: 0 the first time (random × initial), then the full delay.
        assert_eq!(
            schedule(policy(None), 0.0, 6),
            [0, 4_000, 12_000, 22_000, 32_000, 42_000]
        );
        // Almost all of it: the first delay up to the initial one, later ones halved.
        let times = schedule(policy(None), 0.999_999, 4);
        assert_eq!(times, [1_999, 3_999, 7_999, 12_999]);
    }

    #[test]
    fn jitter_keeps_each_delay_within_its_bounds() {
        let mut backoff = Backoff::new(BackoffPolicy::default());
        let mut ceiling: f64 = 5.0;
        for attempt in 0..40 {
            let delay = backoff.next_delay().unwrap().as_secs_f64();
            if attempt == 0 {
                assert!((0.0..=5.0).contains(&delay), "{delay}");
            } else {
                ceiling = (ceiling * 1.618).min(90.0);
                assert!(
                    (ceiling / 2.0..=ceiling).contains(&delay),
                    "{attempt}: {delay}"
                );
            }
        }
    }

    #[test]
    fn max_attempts_ends_the_run_and_a_new_run_starts_over() {
        assert_eq!(schedule(policy(Some(3)), 0.0, 10), [0, 4_000]);
        let mut backoff = Backoff::new(policy(Some(1)));
        assert_eq!(backoff.next_delay_with(0.0), None);
        assert_eq!(backoff.failures(), 1);
        assert_eq!(schedule(policy(Some(3)), 0.0, 10), [0, 4_000]);
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            BackoffPolicy {
                factor: 0.5,
                ..Default::default()
            },
            BackoffPolicy {
                factor: f64::NAN,
                ..Default::default()
            },
            BackoffPolicy {
                jitter: 1.5,
                ..Default::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
        assert!(BackoffPolicy::default().validate().is_ok());
    }

    #[test]
    fn transient_failures_are_network_timeouts_and_5xx() {
        let status = |code| Box::new(Response::new(code, Vec::new()));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(Error::Io(refused).is_transient());
        assert!(Error::Timeout("opening handshake").is_transient());
        assert!(Error::InvalidMessage("closed".into()).is_transient());
        assert!(Error::InvalidStatus(status(503)).is_transient());
        assert!(Error::ProxyStatus(status(502)).is_transient());
        assert!(!Error::InvalidStatus(status(403)).is_transient());
        assert!(!Error::ProxyStatus(status(407)).is_transient());
        assert!(!Error::InvalidUri {
            uri: "x".into(),
            reason: "y".into()
        }
        .is_transient());
        assert!(!Error::Proxy("rejected".into()).is_transient());
        assert!(!Error::Negotiation("no".into()).is_transient());
    }
}
