//! One set of credentials and the signing key derived from them (per day,
//! region and service), kept as long as the credentials are fresh.

use super::*;

/// One set of credentials, and the signing key derived from them.
pub(super) struct Signer {
    pub(super) creds: Credentials,
    /// When these credentials were fetched (or found to be all there is).
    pub(super) fetched: Instant,
    /// `{access key id}%2F`: the credential up to its date, escaped.
    pub(super) credential_head: String,
    /// The session token, escaped.
    pub(super) token: Option<String>,
    pub(super) key: RwLock<Option<SigningKey>>,
}

pub(super) struct SigningKey {
    pub(super) day: u64,
    pub(super) region: String,
    pub(super) service: String,
    /// HMAC keyed with the signing key (its pads already hashed).
    pub(super) mac: HmacSha256,
}

impl Signer {
    pub(super) fn new(creds: Credentials) -> Self {
        let mut credential_head = escape(creds.access_key_id(), QUERY_VALUE);
        credential_head.push_str("%2F");
        Self {
            token: creds.session_token().map(|t| escape(t, QUERY_VALUE)),
            credential_head,
            creds,
            fetched: Instant::now(),
            key: RwLock::new(None),
        }
    }

    /// Whether these credentials need no refresh yet.
    pub(super) fn fresh(&self, now: SystemTime) -> bool {
        match self.creds.expiry() {
            None => true,
            Some(expiry) => {
                now.checked_add(REFRESH_BEFORE_EXPIRY)
                    .is_some_and(|t| t < expiry)
                    || (now < expiry && self.fetched.elapsed() < REFRESH_RETRY)
            }
        }
    }

    /// Whether these credentials have not expired.
    pub(super) fn valid(&self, now: SystemTime) -> bool {
        self.creds.expiry().is_none_or(|expiry| now < expiry)
    }

    /// An HMAC keyed with the signing key of this day, region and service.
    pub(super) fn mac(&self, t: &Template, stamp: &Stamp) -> HmacSha256 {
        let hit =
            |k: &SigningKey| k.day == stamp.day && k.region == t.region && k.service == t.service;
        if let Some(k) = read(&self.key).as_ref().filter(|k| hit(k)) {
            return k.mac.clone();
        }
        let key = aws_sigv4::sign::v4::generate_signing_key(
            self.creds.secret_access_key(),
            stamp.time,
            &t.region,
            &t.service,
        );
        let mac = HmacSha256::new_from_slice(key.as_ref()).expect("HMAC takes any key length");
        *write(&self.key) = Some(SigningKey {
            day: stamp.day,
            region: t.region.clone(),
            service: t.service.clone(),
            mac: mac.clone(),
        });
        mac
    }
}
