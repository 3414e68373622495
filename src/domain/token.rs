//! Resume tokens.
//!
//! A token is `base64url(version ‖ upload id ‖ HMAC-SHA256(key, label ‖ upload id))`.
//! The key is configuration (`BROKER_TOKEN_SECRET`), never data: the database holds
//! only the upload id, so a copy of it cannot resume, complete or abort anything.
//! Because the token is derived, the broker can hand it back later (the fingerprint
//! lookup) without storing it. Checking a token is a MAC comparison in constant time
//! before any database access.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

const VERSION: u8 = 1;
const LABEL: &[u8] = b"upload-broker/resume-token/v1";
const FINGERPRINT_LABEL: &[u8] = b"upload-broker/fingerprint/v1";
const MAC_LEN: usize = 32;
const RAW_LEN: usize = 1 + 16 + MAC_LEN;
/// Length of an encoded token in characters.
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// The secret that resume tokens are derived from.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    /// At least 32 bytes of secret; shorter keys are refused.
    pub fn new(secret: &[u8]) -> Option<Self> {
        (secret.len() >= 32).then(|| Self(secret.to_vec()))
    }

    fn mac(&self, id: &Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(LABEL);
        mac.update(id.as_bytes());
        mac
    }

    /// The resume token of upload `id`.
    pub fn token_for(&self, id: Uuid) -> ResumeToken {
        let tag = self.mac(&id).finalize().into_bytes();
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(id.as_bytes());
        raw.extend_from_slice(&tag[..MAC_LEN]);
        ResumeToken(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The keyed hash a fingerprint is stored (and looked up) as: HMAC-SHA256
    /// with this key, over the tenant and the fingerprint, hex. A copy of the
    /// database cannot turn a known fingerprint into its upload's token.
    pub fn fingerprint_mac(&self, tenant: &str, fingerprint: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(FINGERPRINT_LABEL);
        mac.update(&(tenant.len() as u64).to_be_bytes());
        mac.update(tenant.as_bytes());
        mac.update(fingerprint.as_bytes());
        let tag = mac.finalize().into_bytes();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key for another purpose, derived from this one (HMAC-SHA256 of a
    /// label), so that one secret serves every instance for both.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"upload-broker/derived/");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The upload id a token stands for, if the token is genuine.
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        if token.len() != TOKEN_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != RAW_LEN || raw[0] != VERSION {
            return None;
        }
        let id = Uuid::from_slice(&raw[1..17]).ok()?;
        // verify_slice compares in constant time.
        self.mac(&id).verify_slice(&raw[17..]).ok()?;
        Some(id)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// A resume token as handed to clients. Its `Debug` hides it so it cannot reach
/// a log by accident; `expose()` is for the response body only.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeToken(String);

impl ResumeToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::new(&[b; 32]).unwrap()
    }

    #[test]
    fn fingerprint_macs_depend_on_key_and_tenant_and_hide_the_fingerprint() {
        let fp = "movie.mp4:123:1700000000:abcdef";
        let a = key(7).fingerprint_mac("tenant-a", fp);
        assert_eq!(a, key(7).fingerprint_mac("tenant-a", fp), "deterministic");
        assert_eq!(a.len(), 64);
        assert_ne!(a, key(8).fingerprint_mac("tenant-a", fp), "keyed");
        assert_ne!(a, key(7).fingerprint_mac("tenant-b", fp), "per tenant");
        assert_ne!(
            a,
            key(7).fingerprint_mac("tenant-a", "movie.mp4:124:1700000000:abcdef")
        );
        // Tenant and fingerprint cannot be shifted into each other.
        assert_ne!(
            key(7).fingerprint_mac("ab", "c"),
            key(7).fingerprint_mac("a", "bc")
        );
        assert!(!a.contains("movie"));
    }

    #[test]
    fn round_trip() {
        let id = Uuid::new_v4();
        let t = key(7).token_for(id);
        assert_eq!(t.expose().len(), TOKEN_LEN);
        assert!(t
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(key(7).verify(t.expose()), Some(id));
    }

    #[test]
    fn another_key_or_a_changed_byte_is_refused() {
        let id = Uuid::new_v4();
        let t = key(7).token_for(id);
        assert_eq!(key(8).verify(t.expose()), None);
        let mut s = t.expose().to_string();
        for i in [0, 5, 30, TOKEN_LEN - 2] {
            let orig = s.as_bytes()[i];
            let c = if orig == b'A' { "B" } else { "A" };
            s.replace_range(i..i + 1, c);
            assert_eq!(key(7).verify(&s), None, "changed byte {i}");
            s = t.expose().to_string();
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(key(1).verify(""), None);
        assert_eq!(key(1).verify("not-a-token"), None);
        assert_eq!(key(1).verify(&"A".repeat(TOKEN_LEN)), None);
        assert_eq!(key(1).verify(&"é".repeat(TOKEN_LEN)), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenKey::new(&[0; 31]).is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let t = key(1).token_for(Uuid::new_v4());
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}
