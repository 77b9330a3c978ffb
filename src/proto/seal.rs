//! Authenticated encryption of datagrams under the room key.
//!
//! - **Key**: Argon2id (RFC 9106) of the room code's 16 canonical symbols, with a fixed
//!   protocol salt, 19 MiB of memory, 2 passes and 1 lane (the OWASP password-storage
//!   minimum for Argon2id). Deriving it takes tens of milliseconds, so it is done once per
//!   code change on the network thread, never per datagram and never on the audio thread. A
//!   room code has 80 random bits; the memory-hard KDF makes guessing even a weaker,
//!   hand-typed code expensive for someone who captured traffic.
//! - **AEAD**: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha, the 24-byte-nonce form of
//!   RFC 8439). The 24-byte header is the associated data (authenticated, readable by anyone);
//!   the body is encrypted; the 16-byte tag follows it.
//! - **Nonce**: sender id (8 bytes, little-endian) ‖ sequence number (8) ‖ 8 zero bytes. A
//!   sender id is drawn at random each time a network thread starts and its sequence numbers
//!   start at 0 and only grow, so no (key, nonce) pair is ever used twice; the extended nonce
//!   leaves room to make that so without coordination between senders.
//! - **Key material** never outlives its use: the derived bytes are wiped as soon as the cipher
//!   holds them (`zeroize`), the cipher wipes its copy when dropped (chacha20poly1305 does so
//!   itself), and Argon2's working memory is wiped by its `zeroize` feature.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::room::RoomCode;

/// Bytes the tag adds to a sealed datagram.
pub const TAG_LEN: usize = 16;
/// Salt of the key derivation: fixed, so that every Receiver and Sender with the same code
/// derives the same key. (A per-room salt would have to travel in the clear anyway.)
const KDF_SALT: &[u8] = b"udp-midi room key, protocol v2";
/// Argon2id memory, KiB (19 MiB).
const KDF_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes.
const KDF_PASSES: u32 = 2;

/// The key of one room.
#[derive(Clone)]
pub struct RoomKey {
    /// The AEAD instance with its key schedule.
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomKey(..)")
    }
}

/// Why a sealed body could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailed;

/// Why no key could be derived: Argon2 refused its parameters or ran out of memory. A room
/// must then stay closed (no key is not "all zeros").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyError(pub argon2::Error);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot derive the room key: {}", self.0)
    }
}

impl std::error::Error for KeyError {}

impl RoomKey {
    /// Derives the key of `code` (slow on purpose: tens of milliseconds; run it off the
    /// network loop).
    pub fn derive(code: &RoomCode) -> Result<Self, KeyError> {
        Self::derive_with(code, KDF_MEMORY_KIB)
    }

    /// [`RoomKey::derive`] with `memory_kib` of Argon2 memory (tests make it fail with a
    /// value Argon2 refuses).
    fn derive_with(code: &RoomCode, memory_kib: u32) -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        let params = argon2::Params::new(memory_kib, KDF_PASSES, 1, Some(32)).map_err(KeyError)?;
        let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        kdf.hash_password_into(code.as_str().as_bytes(), KDF_SALT, &mut key[..])
            .map_err(KeyError)?;
        Ok(Self::from_key(&key))
    }

    /// A key from its 32 bytes (tests, and keys derived elsewhere). The caller's copy is
    /// its own to wipe.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        Self::from_key(&key)
    }

    fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Encrypts `body` in place and returns the tag, binding `header` (the associated data).
    pub fn seal(&self, sender_id: u64, seq: u64, header: &[u8], body: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = nonce(sender_id, seq);
        match self.cipher.encrypt_in_place_detached(&nonce, header, body) {
            Ok(tag) => tag.into(),
            // Only fails for bodies over 256 GiB.
            Err(_) => [0; TAG_LEN],
        }
    }

    /// Checks `tag` and decrypts `body` in place; on failure `body` is left as it was
    /// (garbage either way: the caller discards it).
    pub fn open(
        &self,
        sender_id: u64,
        seq: u64,
        header: &[u8],
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let nonce = nonce(sender_id, seq);
        self.cipher
            .decrypt_in_place_detached(&nonce, header, body, Tag::from_slice(tag))
            .map_err(|_| AuthFailed)
    }
}

/// The 24-byte nonce of a datagram.
fn nonce(sender_id: u64, seq: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&sender_id.to_le_bytes());
    n[8..16].copy_from_slice(&seq.to_le_bytes());
    *XNonce::from_slice(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tamper_fails() {
        let k = RoomKey::from_bytes([7; 32]);
        let header = [1u8; 24];
        let mut body = *b"a note on channel one";
        let plain = body;
        let tag = k.seal(5, 9, &header, &mut body);
        assert_ne!(body, plain, "encrypted");
        let mut b = body;
        k.open(5, 9, &header, &mut b, &tag).unwrap();
        assert_eq!(b, plain);
        // Wrong sequence, sender, header, body or tag: refused.
        let mut b = body;
        assert_eq!(k.open(5, 10, &header, &mut b, &tag), Err(AuthFailed));
        let mut b = body;
        assert_eq!(k.open(6, 9, &header, &mut b, &tag), Err(AuthFailed));
        let mut h2 = header;
        h2[5] ^= 1;
        let mut b = body;
        assert_eq!(k.open(5, 9, &h2, &mut b, &tag), Err(AuthFailed));
        let mut b = body;
        b[3] ^= 0x80;
        assert_eq!(k.open(5, 9, &header, &mut b, &tag), Err(AuthFailed));
        let mut t2 = tag;
        t2[15] ^= 1;
        let mut b = body;
        assert_eq!(k.open(5, 9, &header, &mut b, &t2), Err(AuthFailed));
        // Another key.
        let other = RoomKey::from_bytes([8; 32]);
        let mut b = body;
        assert_eq!(other.open(5, 9, &header, &mut b, &tag), Err(AuthFailed));
    }

    #[test]
    fn derivation_is_deterministic_and_code_specific() {
        let a = RoomCode::parse("7QF2-M9KD-XW3C-T0ZB").unwrap();
        let b = RoomCode::parse("7QF2-M9KD-XW3C-T0ZC").unwrap();
        let (ka, ka2, kb) = (
            RoomKey::derive(&a).unwrap(),
            RoomKey::derive(&a).unwrap(),
            RoomKey::derive(&b).unwrap(),
        );
        let header = [0u8; 24];
        let mut body = [42u8; 8];
        let tag = ka.seal(1, 1, &header, &mut body);
        let mut b1 = body;
        assert!(ka2.open(1, 1, &header, &mut b1, &tag).is_ok());
        let mut b2 = body;
        assert!(kb.open(1, 1, &header, &mut b2, &tag).is_err());
    }

    #[test]
    fn an_argon2_failure_is_an_error_not_a_zero_key() {
        let code = RoomCode::parse("7QF2-M9KD-XW3C-T0ZB").unwrap();
        // Argon2 needs at least 8 KiB per lane: 1 KiB is refused.
        let err = RoomKey::derive_with(&code, 1).unwrap_err();
        assert_eq!(err, KeyError(argon2::Error::MemoryTooLittle));
        // The key it would have silently become before: all zeros. The room's real key is not
        // that one.
        let zero = RoomKey::from_bytes([0; 32]);
        let real = RoomKey::derive(&code).unwrap();
        let header = [0u8; 24];
        let mut body = [1u8; 4];
        let tag = zero.seal(1, 1, &header, &mut body);
        assert!(real.open(1, 1, &header, &mut body.clone(), &tag).is_err());
    }
}
