//! The room key a plugin instance derived last, kept across its activations.
//!
//! Hosts deactivate and activate a plugin often: on every change of sample rate or block
//! size, when the audio engine stops and starts, and some on every transport stop. Each
//! activation starts a new network thread, and deriving the room key again (Argon2id, tens of
//! milliseconds of one core, see [`crate::proto::seal`]) would delay the Receiver's listening
//! and the Sender's first datagram by that much every time, for a code that has not changed.
//! So each plugin instance keeps the last key it derived, with its code, and a network thread
//! that starts with the same code takes it at once.
//!
//! Touched by the network threads and tokio's blocking pool only (one short lock per code
//! change or thread start), never by the audio thread. The key is already in the instance's
//! memory for as long as it plays; the cache holds it no longer than the instance lives, and
//! it is wiped when replaced or dropped ([`RoomKey`]'s cipher wipes itself).

use crate::proto::room::RoomCode;
use crate::proto::seal::{KeyError, RoomKey};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::task::JoinHandle;

/// The last key derived by one plugin instance, and the code it is the key of.
#[derive(Default)]
pub struct KeyCache {
    /// `(code, key)`, once a derivation has succeeded.
    last: Mutex<Option<(RoomCode, RoomKey)>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(..)")
    }
}

impl KeyCache {
    /// The key of `code`, if it is the one derived last.
    pub fn get(&self, code: &RoomCode) -> Option<RoomKey> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(c, _)| c == code)
            .map(|(_, k)| k.clone())
    }

    /// Keeps `key` as the key of `code`, in place of the previous one.
    pub fn put(&self, code: RoomCode, key: RoomKey) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((code, key));
    }
}

/// The key of `code`: at once when `cache` has it, otherwise derived on tokio's blocking pool
/// (and then kept in `cache`), so the caller's loop keeps serving meanwhile. Must be called
/// inside a tokio runtime.
pub fn key_of(code: &RoomCode, cache: &Arc<KeyCache>) -> JoinHandle<Result<RoomKey, KeyError>> {
    if let Some(key) = cache.get(code) {
        return tokio::spawn(async move { Ok(key) });
    }
    let (code, cache) = (code.clone(), cache.clone());
    tokio::task::spawn_blocking(move || {
        let key = RoomKey::derive(&code)?;
        cache.put(code, key.clone());
        Ok(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RoomCode {
        RoomCode::parse(s).expect("a valid code")
    }

    #[test]
    fn keeps_only_the_last_code() {
        let cache = KeyCache::default();
        let (a, b) = (code("7QF2-M9KD-XW3C-T0ZB"), code("AAAA-BBBB-CCCC-DDDD"));
        assert!(cache.get(&a).is_none());
        cache.put(a.clone(), RoomKey::from_bytes([1; 32]));
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none());
        cache.put(b.clone(), RoomKey::from_bytes([2; 32]));
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
    }

    /// The second request for the same code is answered from the cache with the same key as
    /// the derivation: a datagram sealed with one opens with the other.
    #[test]
    fn derives_once_per_code() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let cache = Arc::new(KeyCache::default());
        let c = code("7QF2-M9KD-XW3C-T0ZB");
        let derived = rt
            .block_on(async { key_of(&c, &cache).await })
            .expect("the task ran")
            .expect("derived");
        let cached_key = cache.get(&c).expect("kept after the derivation");
        let again = rt
            .block_on(async { key_of(&c, &cache).await })
            .expect("the task ran")
            .expect("from the cache");
        let header = [0u8; crate::proto::wire::HEADER_LEN];
        let mut body = *b"a note";
        let tag = derived.seal(7, 1, &header, &mut body);
        for k in [&again, &cached_key] {
            let mut copy = body;
            k.open(7, 1, &header, &mut copy, &tag)
                .expect("opens with the cached key");
            assert_eq!(&copy, b"a note");
        }
    }
}
