//! The three caches of the token path, each bounded:
//!
//! - [`OutboundTokenCache`]: one token per (key, audience, signed context), reused until it
//!   nears expiry, so signing is amortised across calls.
//! - [`VerifiedCache`]: the answer for the same token bytes is the same until `exp`, so a
//!   caller reusing its token costs a SHA-256 and a map lookup, not a signature check.
//!   Entries belong to one keyring generation: a new keyring (a key removed or revoked)
//!   invalidates them all at once.
//! - [`ReplayCache`]: `jti`s of request-bound tokens seen, until they expire.
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher as _, BuildHasherDefault};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::HeaderValue;

use super::sign::TokenSigner;
use super::verify::{Rejection, Verified};
use crate::keys::KeyError;

/// Locks a cache map. A panic while holding one of these locks leaves only a cache
/// behind, never a half-updated security decision, so a poisoned lock is simply reused.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A token for one (key, audience, signed context), with the header values that carry it.
/// (No `Debug`: a token is never printed.)
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: Arc<str>,
    /// `Bearer <token>`, for `Authorization`.
    pub bearer: HeaderValue,
    /// The bare token, for any other token header. Shares `bearer`'s bytes.
    pub bare: HeaderValue,
}

impl Issued {
    /// The header values of `token`.
    pub fn new(token: Arc<str>) -> Result<Self, KeyError> {
        let bytes = Bytes::from(format!("Bearer {token}"));
        let not_a_value = |_| KeyError::Sign("the token is not a header value".into());
        Ok(Issued {
            bearer: HeaderValue::from_maybe_shared(bytes.clone()).map_err(not_a_value)?,
            bare: HeaderValue::from_maybe_shared(bytes.slice("Bearer ".len()..))
                .map_err(not_a_value)?,
            token,
        })
    }
}

struct CachedToken {
    kid: Box<str>,
    aud: Box<str>,
    ctx: Option<BTreeMap<String, String>>,
    issued: Issued,
    renew_at: u64,
}

pub struct OutboundTokenCache {
    capacity: usize,
    /// A foldhash seed drawn at random for this process.
    key: foldhash::quality::RandomState,
    /// Keyed by the slot hash of (kid, audience, context); the entry holds all three, so
    /// a hit is an exact comparison and a lookup copies nothing.
    entries: Mutex<HashMap<u64, CachedToken, BuildHasherDefault<SlotHasher>>>,
}

impl OutboundTokenCache {
    pub fn new(capacity: usize) -> Self {
        OutboundTokenCache {
            capacity: capacity.max(1),
            key: foldhash::quality::RandomState::default(),
            entries: Mutex::new(HashMap::default()),
        }
    }

    fn slot(&self, kid: &str, aud: &str, ctx: Option<&BTreeMap<String, String>>) -> u64 {
        self.key.hash_one((kid, aud, ctx))
    }

    /// The cached token for (`signer`'s kid, `aud`, `ctx`), or a fresh one. The bool says
    /// whether it was a hit. A token is renewed once less than max(ttl/4, 5 s) of its
    /// lifetime is left, so a receiver never sees one about to expire.
    pub fn get_or_sign(
        &self,
        signer: &TokenSigner,
        aud: &str,
        ctx: Option<&BTreeMap<String, String>>,
        now: u64,
    ) -> Result<(Issued, bool), KeyError> {
        let ctx = ctx.filter(|c| !c.is_empty());
        let kid = signer.kid();
        let slot = self.slot(kid, aud, ctx);
        if let Some(hit) = lock(&self.entries).get(&slot) {
            if now < hit.renew_at && *hit.kid == *kid && *hit.aud == *aud && hit.ctx.as_ref() == ctx
            {
                return Ok((hit.issued.clone(), true));
            }
        }
        // Sign outside the lock: concurrent misses may both sign, which costs one extra
        // signature and never blocks other audiences.
        let issued = Issued::new(signer.sign(aud, ctx, None, now)?.into())?;
        let ttl = signer.ttl().as_secs();
        let margin = (ttl / 4).max(5).min(ttl);
        let renew_at = now + ttl - margin;
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity && !entries.contains_key(&slot) {
            entries.retain(|_, v| now < v.renew_at);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        // The first token of a new signing key: the others can never be used again.
        if entries.values().next().is_some_and(|v| *v.kid != *kid) {
            entries.retain(|_, v| *v.kid == *kid);
        }
        // A slot shared by two keys (a 64-bit collision) holds the latest one.
        entries.insert(
            slot,
            CachedToken {
                kid: kid.into(),
                aud: aud.into(),
                ctx: ctx.cloned(),
                issued: issued.clone(),
                renew_at,
            },
        );
        Ok((issued, false))
    }

    /// Forget every token.
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct VerifiedEntry<T> {
    /// The token itself: a hit is an exact match, never a hash collision.
    token: Box<str>,
    verified: Arc<T>,
    exp: u64,
    generation: u64,
}

/// What a verified-token cache keeps: a verified call's token, or a verified person (a
/// transaction token's).
pub trait Cacheable {
    /// Never served after this (Unix seconds).
    fn exp(&self) -> u64;
    /// The key that signed it.
    fn kid(&self) -> &str;
}

impl Cacheable for Verified {
    fn exp(&self) -> u64 {
        self.claims.exp
    }

    fn kid(&self) -> &str {
        &self.kid
    }
}

impl Cacheable for super::Person {
    fn exp(&self) -> u64 {
        self.exp
    }

    fn kid(&self) -> &str {
        &self.kid
    }
}

pub struct VerifiedCache<T = Verified> {
    capacity: usize,
    /// A foldhash seed drawn at random for this process.
    key: foldhash::quality::RandomState,
    /// Keyed by the slot hash itself (already a keyed hash): not hashed again.
    entries: Mutex<HashMap<u64, VerifiedEntry<T>, BuildHasherDefault<SlotHasher>>>,
    /// The newest keyring generation inserted; written under `entries`' lock.
    newest: std::sync::atomic::AtomicU64,
}

/// The identity hash of a slot that is already a keyed hash.
#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a u64); any other input is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl<T: Cacheable> VerifiedCache<T> {
    pub fn new(capacity: usize) -> Self {
        VerifiedCache {
            capacity,
            key: foldhash::quality::RandomState::default(),
            entries: Mutex::new(HashMap::default()),
            newest: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The slot of a token: foldhash (keyed at random per process) of the token's last
    /// 32 bytes — always inside its signature (the shortest, HS256's, is 43 characters),
    /// which differs between any two tokens that differ: 24 bytes of signature do not
    /// repeat, even for a signer grinding for it. The entry holds the whole token, so a
    /// hit is an exact comparison; only verified tokens are ever stored, so a forged token
    /// sharing a real one's tail cannot displace it. (SipHash of the whole ~600-byte token
    /// was ~2 % of a cached verification's instructions, of its last 96 bytes ~0.9 %; a
    /// SHA-256 of it, before that, 17 %.)
    fn key(&self, token: &[u8]) -> u64 {
        self.key.hash_one(&token[token.len().saturating_sub(32)..])
    }

    /// The earlier verification of these exact bytes, if it was made against keyring
    /// `generation` and the token has not expired. No leeway is granted here: a cached
    /// answer never outlives `exp`.
    pub fn get(&self, token: &[u8], generation: u64, now: u64) -> Option<Arc<T>> {
        if self.capacity == 0 {
            return None;
        }
        let hash = self.key(token);
        let entries = lock(&self.entries);
        let e = entries.get(&hash)?;
        (e.token.as_bytes() == token && e.generation == generation && now <= e.exp)
            .then(|| e.verified.clone())
    }

    pub fn insert(&self, token: &str, verified: Arc<T>, generation: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let exp = verified.exp();
        let hash = self.key(token.as_bytes());
        let mut entries = lock(&self.entries);
        // The first entry of a new keyring: the older ones can never be used again.
        let newest = &self.newest;
        if generation > newest.load(std::sync::atomic::Ordering::Relaxed) {
            newest.store(generation, std::sync::atomic::Ordering::Relaxed);
            entries.retain(|_, e| e.generation >= generation);
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.generation == generation && now <= e.exp);
            if entries.len() >= self.capacity {
                // Still full of live entries: drop an arbitrary tenth rather than refuse
                // to cache, so the cost stays bounded and the hot set re-enters.
                let drop: Vec<_> = entries
                    .keys()
                    .take((self.capacity / 10).max(1))
                    .copied()
                    .collect();
                for k in drop {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            hash,
            VerifiedEntry {
                token: token.into(),
                verified,
                exp,
                generation,
            },
        );
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// Drops the entries of one key (removed or revoked).
    pub fn remove_kid(&self, kid: &str) {
        lock(&self.entries).retain(|_, e| e.verified.kid() != kid);
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct ReplayCache {
    capacity: usize,
    leeway: u64,
    seen: Mutex<Seen>,
}

struct Seen {
    /// jti → the last second at which a token carrying it could still be accepted.
    until: HashMap<String, u64>,
    /// No entry's `until` is earlier than this (it may be later than the earliest
    /// entry's, never earlier): before it passes, a sweep could free nothing.
    soonest: u64,
    #[cfg(test)]
    sweeps: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize, leeway: std::time::Duration) -> Self {
        ReplayCache {
            capacity,
            leeway: leeway.as_secs(),
            seen: Mutex::new(Seen {
                until: HashMap::new(),
                soonest: u64::MAX,
                #[cfg(test)]
                sweeps: 0,
            }),
        }
    }

    /// Records `jti`; refuses it if it was seen before and could still be accepted.
    ///
    /// When the cache is full of live `jti`s the token is refused: accepting it without
    /// remembering it would make replay possible, so under such a flood bound tokens fail
    /// closed until older entries expire. Expired entries are swept only once the
    /// soonest of them can have expired: a flood against a full cache costs a lookup per
    /// token, not a pass over every entry.
    pub fn check_and_insert(&self, jti: &str, exp: u64, now: u64) -> Result<(), Rejection> {
        let mut guard = lock(&self.seen);
        let seen = &mut *guard;
        if let Some(&until) = seen.until.get(jti) {
            if now <= until {
                return Err(Rejection::Replayed);
            }
        }
        if seen.until.len() >= self.capacity {
            if now <= seen.soonest {
                return Err(Rejection::Replayed);
            }
            let mut soonest = u64::MAX;
            seen.until.retain(|_, &mut until| {
                let live = now <= until;
                if live {
                    soonest = soonest.min(until);
                }
                live
            });
            seen.soonest = soonest;
            #[cfg(test)]
            {
                seen.sweeps += 1;
            }
            if seen.until.len() >= self.capacity {
                return Err(Rejection::Replayed);
            }
        }
        let until = exp.saturating_add(self.leeway);
        seen.until.insert(jti.to_owned(), until);
        seen.soonest = seen.soonest.min(until);
        Ok(())
    }

    pub fn len(&self) -> usize {
        lock(&self.seen).until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn a_full_replay_cache_sweeps_only_when_an_entry_can_have_expired() {
        let cache = ReplayCache::new(3, std::time::Duration::from_secs(30));
        // Full: last accepted at NOW+40, NOW+90, NOW+130 (exp + leeway).
        cache.check_and_insert("a", NOW + 10, NOW).unwrap();
        cache.check_and_insert("b", NOW + 60, NOW).unwrap();
        cache.check_and_insert("c", NOW + 100, NOW).unwrap();
        let sweeps = || lock(&cache.seen).sweeps;
        // Until the soonest can expire, a flood of new jtis is refused without a sweep.
        for i in 0..1000 {
            let jti = format!("flood-{i}");
            assert_eq!(
                cache.check_and_insert(&jti, NOW + 60, NOW + 40),
                Err(Rejection::Replayed)
            );
        }
        assert_eq!(sweeps(), 0);
        // Past it, one sweep frees "a" and the new jti takes its place.
        assert!(cache.check_and_insert("d", NOW + 100, NOW + 41).is_ok());
        assert_eq!((sweeps(), cache.len()), (1, 3));
        // Full again of entries live until NOW+90 at the soonest: refused, no sweep.
        assert_eq!(
            cache.check_and_insert("e", NOW + 100, NOW + 90),
            Err(Rejection::Replayed)
        );
        assert_eq!(sweeps(), 1);
        // Replays stay refused whatever the fill; "b" expires after NOW+90.
        assert_eq!(
            cache.check_and_insert("c", NOW + 100, NOW + 91),
            Err(Rejection::Replayed)
        );
        assert!(cache.check_and_insert("e", NOW + 100, NOW + 91).is_ok());
        assert_eq!((sweeps(), cache.len()), (2, 3));
    }
}
