//! channels_redis' `BaseMessageSerializer` around a msgpack body: optional Fernet encryption
//! (`symmetric_encryption_keys`), then, for the core layer, random bytes in front.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use fernet::Fernet;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes the core layer puts before every message: its sorted sets need distinct
/// members, so two equal messages must not be one (channels_redis' `random_prefix_length`).
pub(crate) const CORE_RANDOM_PREFIX: usize = 12;

/// Turns msgpack bodies into what is stored in Redis, and back.
#[derive(Clone)]
pub(crate) struct Serializer {
    random_prefix: usize,
    /// Encrypts with the first key, decrypts with whichever works (Python's `MultiFernet`).
    keys: Vec<Fernet>,
    /// Oldest token accepted, in seconds: the core layer's `expiry + 10`; none for pub/sub.
    ttl: Option<u64>,
}

/// Why a stored message could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("shorter than its {0} random prefix bytes")]
    TooShort(usize),
    #[error(
        "cannot be decrypted with any of the symmetric_encryption_keys (another key, tampered, or older than the expiry)"
    )]
    Decryption,
}

impl Serializer {
    /// `keys` are channels_redis' `symmetric_encryption_keys`, as written in Django's settings.
    pub(crate) fn new(
        random_prefix: usize,
        keys: &[String],
        expiry: Option<Duration>,
    ) -> Serializer {
        Serializer {
            random_prefix,
            keys: keys.iter().map(|key| fernet_for(key)).collect(),
            ttl: expiry.map(|expiry| expiry.as_secs() + 10),
        }
    }

    /// What to store for a msgpack body.
    pub(crate) fn serialize(&self, body: &[u8]) -> Vec<u8> {
        let token;
        let payload = match self.keys.first() {
            Some(fernet) => {
                token = fernet.encrypt(body);
                token.as_bytes()
            }
            None => body,
        };
        let mut stored = vec![0; self.random_prefix];
        rand::rng().fill_bytes(&mut stored);
        stored.extend_from_slice(payload);
        stored
    }

    /// The msgpack body of a stored message.
    pub(crate) fn deserialize<'a>(
        &self,
        stored: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, Unreadable> {
        let payload = stored
            .get(self.random_prefix..)
            .ok_or(Unreadable::TooShort(self.random_prefix))?;
        if self.keys.is_empty() {
            return Ok(std::borrow::Cow::Borrowed(payload));
        }
        let token = std::str::from_utf8(payload).map_err(|_| Unreadable::Decryption)?;
        self.keys
            .iter()
            .find_map(|fernet| match self.ttl {
                Some(ttl) => fernet.decrypt_with_ttl(token, ttl).ok(),
                None => fernet.decrypt(token).ok(),
            })
            .map(std::borrow::Cow::Owned)
            .ok_or(Unreadable::Decryption)
    }
}

/// channels_redis' `make_fernet`: the Fernet key is the URL-safe base64 of the key's SHA-256,
/// so any string is a key.
fn fernet_for(key: &str) -> Fernet {
    let encoded = URL_SAFE.encode(Sha256::digest(key.as_bytes()));
    // 32 bytes in URL-safe base64 with padding is always a valid Fernet key.
    Fernet::new(&encoded).unwrap_or_else(|| unreachable!("a SHA-256 digest is a Fernet key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_a_random_prefix() {
        let serializer = Serializer::new(CORE_RANDOM_PREFIX, &[], None);
        let a = serializer.serialize(b"\x81\xa4type\xa1x");
        let b = serializer.serialize(b"\x81\xa4type\xa1x");
        assert_eq!(a.len(), CORE_RANDOM_PREFIX + 8);
        assert_ne!(a, b, "equal bodies are distinct members");
        assert_eq!(&*serializer.deserialize(&a).unwrap(), b"\x81\xa4type\xa1x");
        assert!(serializer.deserialize(b"short").is_err());
    }

    #[test]
    fn encrypted_with_the_first_key_read_with_any() {
        let old = Serializer::new(0, &["old-secret".to_owned()], None);
        let rotated = Serializer::new(
            CORE_RANDOM_PREFIX,
            &["new-secret".to_owned(), "old-secret".to_owned()],
            Some(Duration::from_secs(60)),
        );
        let stored = rotated.serialize(b"body");
        assert!(
            stored[CORE_RANDOM_PREFIX..].starts_with(b"gAAAAA"),
            "a Fernet token"
        );
        assert_eq!(&*rotated.deserialize(&stored).unwrap(), b"body");
        let mut by_old_key = vec![0; CORE_RANDOM_PREFIX];
        by_old_key.extend(old.serialize(b"older"));
        assert_eq!(&*rotated.deserialize(&by_old_key).unwrap(), b"older");
        let stranger = Serializer::new(CORE_RANDOM_PREFIX, &["other".to_owned()], None);
        assert!(stranger.deserialize(&stored).is_err());
        assert!(rotated.deserialize(&[0; 40]).is_err());
    }

    /// A token made by Python's `cryptography` with channels_redis' key derivation for the
    /// key "secret" (`MsgPackSerializer(symmetric_encryption_keys=["secret"])`), body `{"a": 1}`.
    #[test]
    fn reads_a_token_made_by_channels_redis() {
        let serializer = Serializer::new(0, &["secret".to_owned()], None);
        let token = PYTHON_TOKEN.as_bytes();
        assert_eq!(&*serializer.deserialize(token).unwrap(), b"\x81\xa1a\x01");
    }

    const PYTHON_TOKEN: &str = "gAAAAABrEur2el4jtzr3MkrmTcb8H3VQuMOp62oALjV_vzXVtylchREDFWe-WD65QPV7PyUdKsYQ-bJpqKYiTev3B2wI0zLC2g==";
}
