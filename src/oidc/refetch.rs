//! When may a token from a client make portico refetch a JWKS?
//!
//! A key id that is not in the cached JWKS means either that the issuer has
//! rotated its keys (fetch now, or every token signed with the new key
//! fails) or that someone made the kid up (fetching again would only let
//! any client drive traffic to the issuer). Tokens in the provider's own
//! authenticated answers (the token endpoint, over TLS, to our client
//! credentials) are always believed and never come through here. Tokens
//! that clients present (bearer tokens, back-channel logout posts) are
//! limited twice:
//!
//! - per key id: a kid that was looked for and not found is not looked for
//!   again for [`PER_KID_INTERVAL`], so repeating one junk kid costs nothing;
//! - overall: at most one client-triggered fetch per [`GLOBAL_INTERVAL`], so
//!   a stream of ever-new junk kids cannot become a stream of fetches.
//!
//! A junk kid therefore never holds up a real rotation: sign-ins do not pass
//! this limiter at all, and a bearer token with the real new kid waits at
//! most [`GLOBAL_INTERVAL`] (any fetch after the rotation brings the new
//! key, whichever kid triggered it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fasthash::FastMap;

/// How long a kid that was fetched for and not found stays refused.
pub const PER_KID_INTERVAL: Duration = Duration::from_secs(10);
/// The least time between two client-triggered fetches of one JWKS.
pub const GLOBAL_INTERVAL: Duration = Duration::from_secs(1);
/// Kids remembered at most; beyond, only the global interval limits.
const REMEMBERED_KIDS: usize = 4096;

#[derive(Default)]
struct Memory {
    last_fetch: Option<Instant>,
    /// kid → when a fetch was last made for it.
    kids: FastMap<String, Instant>,
}

/// The rate limit on client-triggered refetches of one JWKS.
#[derive(Default)]
pub struct RefetchLimiter {
    memory: Mutex<Memory>,
}

impl RefetchLimiter {
    /// Whether a client's token naming the unknown `kid` may trigger a
    /// fetch at `now`; when it may, the fetch is recorded as made.
    pub fn allow(&self, kid: Option<&str>, now: Instant) -> bool {
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let kid = kid.unwrap_or_default();
        if memory
            .kids
            .get(kid)
            .is_some_and(|at| now.saturating_duration_since(*at) < PER_KID_INTERVAL)
        {
            return false;
        }
        if memory
            .last_fetch
            .is_some_and(|at| now.saturating_duration_since(at) < GLOBAL_INTERVAL)
        {
            return false;
        }
        memory.last_fetch = Some(now);
        if memory.kids.len() >= REMEMBERED_KIDS {
            memory
                .kids
                .retain(|_, at| now.saturating_duration_since(*at) < PER_KID_INTERVAL);
        }
        if memory.kids.len() < REMEMBERED_KIDS {
            memory.kids.insert(kid.to_string(), now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kid_is_fetched_for_once_per_interval() {
        let limiter = RefetchLimiter::default();
        let start = Instant::now();
        assert!(limiter.allow(Some("junk"), start));
        assert!(!limiter.allow(Some("junk"), start + Duration::from_secs(2)));
        assert!(!limiter.allow(Some("junk"), start + Duration::from_secs(9)));
        assert!(limiter.allow(Some("junk"), start + PER_KID_INTERVAL));
    }

    #[test]
    fn a_junk_kid_holds_up_another_kid_for_the_global_interval_only() {
        let limiter = RefetchLimiter::default();
        let start = Instant::now();
        assert!(limiter.allow(Some("junk"), start));
        // The provider rotates right after: its new kid is fetched for as
        // soon as the global interval has passed, not after the junk kid's.
        assert!(!limiter.allow(Some("new-key"), start + Duration::from_millis(500)));
        assert!(limiter.allow(Some("new-key"), start + GLOBAL_INTERVAL));
    }

    #[test]
    fn ever_new_junk_kids_fetch_at_most_once_per_global_interval() {
        let limiter = RefetchLimiter::default();
        let start = Instant::now();
        let allowed = (0..1000u64)
            .filter(|step| {
                // 1000 distinct kids over 5 seconds.
                let at = start + Duration::from_millis(step * 5);
                limiter.allow(Some(&format!("junk-{step}")), at)
            })
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RefetchLimiter::default();
        let start = Instant::now();
        for step in 0..(REMEMBERED_KIDS as u64 * 2) {
            limiter.allow(
                Some(&format!("k{step}")),
                start + GLOBAL_INTERVAL * step as u32,
            );
        }
        let remembered = limiter.memory.lock().unwrap().kids.len();
        assert!(remembered <= REMEMBERED_KIDS, "{remembered}");
    }
}
