//! Webhook secrets: made (`whsec_` + base64 of 32 random bytes, as Standard
//! Webhooks has them), sealed at rest (AES-256-GCM with a key derived from
//! `BROKER_TOKEN_SECRET`, bound to the endpoint's tenant and id, so a copy of
//! the database cannot sign), and used to sign deliveries.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

const PREFIX: &str = "whsec_";
const SECRET_BYTES: usize = 32;

/// A webhook endpoint's signing secret. Its `Debug` shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut b = vec![0u8; SECRET_BYTES];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        Self(b)
    }

    /// `whsec_…`, as it is shown once to the tenant.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// A secret in its shown form.
    pub fn parse(s: &str) -> Option<Self> {
        let b = STANDARD.decode(s.strip_prefix(PREFIX)?).ok()?;
        (b.len() >= 24).then_some(Self(b))
    }

    /// The `webhook-signature` header of a delivery: `v1,` and the base64
    /// HMAC-SHA256 of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Seals and opens webhook secrets for storage.
#[derive(Clone)]
pub struct SecretBox(std::sync::Arc<LessSafeKey>);

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

/// A sealed secret could not be opened: another key, or a row moved or altered.
#[derive(Debug, thiserror::Error)]
#[error("the webhook secret of endpoint {0} cannot be opened with this BROKER_TOKEN_SECRET")]
pub struct Unopenable(pub Uuid);

fn aad(tenant: &str, id: Uuid) -> Vec<u8> {
    let mut a = Vec::with_capacity(tenant.len() + 24);
    a.extend_from_slice(&(tenant.len() as u64).to_be_bytes());
    a.extend_from_slice(tenant.as_bytes());
    a.extend_from_slice(id.as_bytes());
    a
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key");
        Self(std::sync::Arc::new(LessSafeKey::new(key)))
    }

    /// `nonce ‖ ciphertext ‖ tag`, bound to the endpoint (`tenant`, `id`).
    pub fn seal(&self, tenant: &str, id: Uuid, secret: &WebhookSecret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).expect("the OS random source works");
        let mut data = secret.0.clone();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tenant, id)),
                &mut data,
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    pub fn open(&self, tenant: &str, id: Uuid, sealed: &[u8]) -> Result<WebhookSecret, Unopenable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unopenable(id));
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unopenable(id))?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad(tenant, id)), &mut data)
            .map_err(|_| Unopenable(id))?;
        Ok(WebhookSecret(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_and_parse_back() {
        let s = WebhookSecret::generate();
        let shown = s.expose();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&shown), Some(s.clone()));
        assert_ne!(s, WebhookSecret::generate());
        assert!(!format!("{s:?}").contains(&shown[6..]));
    }

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The specification's example (its reference libraries' own test).
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_endpoint() {
        let b = SecretBox::new([7u8; 32]);
        let s = WebhookSecret::generate();
        let id = Uuid::new_v4();
        let sealed = b.seal("acme", id, &s);
        assert!(!sealed.windows(s.0.len()).any(|w| w == s.0.as_slice()));
        assert_eq!(b.open("acme", id, &sealed).unwrap(), s);
        assert!(b.open("other", id, &sealed).is_err());
        assert!(b.open("acme", Uuid::new_v4(), &sealed).is_err());
        assert!(SecretBox::new([8u8; 32]).open("acme", id, &sealed).is_err());
        let mut bent = sealed.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert!(b.open("acme", id, &bent).is_err());
        assert!(b.open("acme", id, &sealed[..5]).is_err());
    }
}
