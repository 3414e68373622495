//! `UploadPart` presigned without building an SDK operation: SigV4 query signing
//! written out for the one request the broker presigns on its hot path (~1 µs a
//! URL, where the SDK's operation, interceptors, endpoint resolution and signer
//! cost ~30 µs).
//!
//! The URL is the SDK's, byte for byte, and nothing about it is guessed. For each
//! bucket the SDK presigns one probe part, whose URL gives the endpoint's base
//! (scheme, host, path or virtual-host style), the signing region and the
//! signing name; the probe is then signed here with the same credentials, and the
//! bucket's template is used only if the two results are identical. Otherwise
//! (an endpoint or signing scheme this module does not reproduce) that bucket's
//! parts all go through the SDK, as do inputs the SDK would refuse or that this
//! module does not sign (a time before 1970 or after 9999, a week-long expiry).
//!
//! What the SDK produces, and so what is produced here:
//!
//! `{base}/{key}?x-id=UploadPart&partNumber={n}&uploadId={id}&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={access key id}%2F{yyyymmdd}%2F{region}%2Fs3%2Faws4_request&X-Amz-Date={yyyymmddThhmmssZ}&X-Amz-Expires={seconds}&X-Amz-SignedHeaders={names}&X-Amz-Signature={hex}[&X-Amz-Security-Token={token}]`
//!
//! The session token comes after the signature, though it is signed (it is part
//! of the canonical query). Keys, upload ids and query values are escaped as
//! smithy escapes them: everything but RFC 3986's unreserved characters (a key
//! keeps its `/`), once: S3 paths are neither double-encoded nor normalized when
//! signed. The signed headers are `host` and those the client sends:
//! `content-length` when the part's length is known, and the checksum header when
//! a checksum is given. The payload is `UNSIGNED-PAYLOAD`.
//!
//! Credentials come from the SDK's provider chain. They are cached, and fetched
//! again when they are within 5 minutes of their expiry; the signing key (an HMAC
//! chain per day, region and service) is cached with them and dropped with them.

use super::presign::presign_upload_part_with;
use super::{PartToSign, PresignedPart, Storage};
use crate::domain::checksum::{ChecksumAlgorithm, PartChecksum};
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::PartNumber;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

mod request;
mod signer;
use request::{escape, hex, push_with, Request, Stamp};
use signer::Signer;

/// What smithy escapes in a query value (`aws_smithy_http::urlencode::BASE_SET`):
/// every character but RFC 3986's unreserved ones, all non-ASCII bytes included.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b':')
    .add(b',')
    .add(b'?')
    .add(b'#')
    .add(b'[')
    .add(b']')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'@')
    .add(b'!')
    .add(b'$')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b';')
    .add(b'=')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'"')
    .add(b'^')
    .add(b'`')
    .add(b'\\');

/// What smithy escapes in a greedy path label (the object key): the same, but `/`.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Credentials this close to their expiry are fetched again.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How often credentials that are due for a refresh, but still valid, are asked
/// for again (a provider may keep returning the same ones until they expire).
const REFRESH_RETRY: Duration = Duration::from_secs(10);
/// How long after a failed probe a bucket is probed again.
const PROBE_RETRY: Duration = Duration::from_secs(60);
/// The longest presigned URL S3 accepts, and the SDK signs.
const ONE_WEEK: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Longer URLs are refused by `http::Uri`, so by the SDK (which may panic).
const MAX_URL_LEN: usize = u16::MAX as usize - 1;
/// Buckets remembered (`Storage::with_bucket` shares the presigner).
const MAX_BUCKETS: usize = 8;

const PROBE_KEY: &str = "probe";
const PROBE_UPLOAD_ID: &str = "probe";
/// SHA-256 of no bytes.
const PROBE_SHA256: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// Presigns `UploadPart` for a [`Storage`], or says it cannot (the SDK then does).
#[derive(Default)]
pub(super) struct PartPresigner {
    /// The credentials in use, with what is derived from them.
    signer: RwLock<Option<Arc<Signer>>>,
    /// One credentials fetch at a time.
    refresh: tokio::sync::Mutex<()>,
    /// What each bucket's probe showed.
    buckets: RwLock<Vec<(String, Learnt)>>,
}

impl fmt::Debug for PartPresigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartPresigner").finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Learnt {
    Template(Arc<Template>),
    /// Signed by the SDK only: the probe could not be reproduced here.
    Sdk,
    /// The probe failed; the SDK signs until it is tried again.
    RetryAt(Instant),
}

impl PartPresigner {
    /// The presigned part, exactly as the SDK would presign it, or `None` when the
    /// SDK has to do it (see the module's documentation).
    pub(super) async fn presign(
        &self,
        storage: &Storage,
        part: &PartToSign<'_>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Option<PresignedPart> {
        if expires_in > ONE_WEEK {
            return None;
        }
        let request = Request::new(part)?;
        let stamp = Stamp::new(start)?;
        let signer = self.signer(storage.credentials.as_ref()?).await?;
        let template = self.template(storage, &signer).await?;
        template.sign(&signer, &request, &stamp, expires_in.as_secs())
    }

    fn current(&self) -> Option<Arc<Signer>> {
        read(&self.signer).clone()
    }

    /// When the credentials in use expire, if they do.
    pub(super) fn credentials_expiry(&self) -> Option<SystemTime> {
        self.current()?.creds.expiry()
    }

    /// Current credentials: cached, fetched again before they expire.
    async fn signer(&self, provider: &SharedCredentialsProvider) -> Option<Arc<Signer>> {
        let now = SystemTime::now();
        let current = self.current();
        if let Some(s) = current.as_ref().filter(|s| s.fresh(now)) {
            return Some(s.clone());
        }
        let still_valid = current.filter(|s| s.valid(now));
        let _one_fetch = match &still_valid {
            // Another caller is fetching; these serve until it is done.
            Some(_) => match self.refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return still_valid,
            },
            None => self.refresh.lock().await,
        };
        let current = self.current();
        if let Some(s) = current.as_ref().filter(|s| s.fresh(SystemTime::now())) {
            return Some(s.clone());
        }
        let fetched = provider.provide_credentials().await;
        let now = SystemTime::now();
        let next = match fetched {
            Ok(creds) => Signer::new(creds),
            Err(e) => {
                tracing::warn!(error = %e, "credentials for presigning could not be loaded");
                // Keep what is still valid, and ask again in a while.
                Signer::new(current.filter(|s| s.valid(now))?.creds.clone())
            }
        };
        let next = Arc::new(next);
        *write(&self.signer) = Some(next.clone());
        next.valid(now).then_some(next)
    }

    /// The bucket's template, learnt from the SDK on first use.
    async fn template(&self, storage: &Storage, signer: &Signer) -> Option<Arc<Template>> {
        let known = read(&self.buckets)
            .iter()
            .find(|(b, _)| *b == storage.bucket)
            .map(|(_, l)| l.clone());
        match known {
            Some(Learnt::Template(t)) => return Some(t),
            Some(Learnt::Sdk) => return None,
            Some(Learnt::RetryAt(at)) if Instant::now() < at => return None,
            _ => {}
        }
        let learnt = Template::learn(storage, signer).await;
        let mut buckets = write(&self.buckets);
        buckets.retain(|(b, _)| *b != storage.bucket);
        if buckets.len() >= MAX_BUCKETS {
            buckets.remove(0);
        }
        buckets.push((storage.bucket.clone(), learnt.clone()));
        match learnt {
            Learnt::Template(t) => Some(t),
            _ => None,
        }
    }
}

/// What a bucket's URLs share, as the SDK's probe showed it.
struct Template {
    /// The URL up to the key's leading `/`: `https://host[/path][/bucket]`.
    base: String,
    /// Where the path starts in `base` (after the scheme and authority).
    path_start: usize,
    /// The signed `host` header.
    host: String,
    region: String,
    service: String,
    /// `%2F{region}%2F{service}%2Faws4_request`: the credential after its date.
    credential_tail: String,
    /// `/{region}/{service}/aws4_request`: the scope after its date.
    scope_tail: String,
}

impl Template {
    /// Presigns a probe part with the SDK (with these credentials) and keeps the
    /// template it shows if, and only if, signing the probe here gives the same.
    async fn learn(storage: &Storage, signer: &Signer) -> Learnt {
        let retry = || Learnt::RetryAt(Instant::now() + PROBE_RETRY);
        // S3 Express directory buckets sign with session credentials of their own.
        if storage.bucket.ends_with("--x-s3") {
            return Learnt::Sdk;
        }
        let client = aws_sdk_s3::Client::from_conf(
            storage
                .client
                .config()
                .to_builder()
                .credentials_provider(signer.creds.clone())
                .identity_cache(aws_sdk_s3::config::IdentityCache::no_cache())
                .build(),
        );
        let key = ObjectKey::from_stored(PROBE_KEY.to_string());
        let Ok(checksum) = PartChecksum::parse(ChecksumAlgorithm::Sha256, PROBE_SHA256) else {
            return Learnt::Sdk;
        };
        let Some(number) = PartNumber::new(1) else {
            return Learnt::Sdk;
        };
        let part = PartToSign {
            key: &key,
            upload_id: PROBE_UPLOAD_ID,
            number,
            content_length: Some(1),
            checksum: Some((ChecksumAlgorithm::Sha256, &checksum)),
        };
        let start = SystemTime::now();
        let expires_in = Duration::from_secs(60);
        let sdk = match presign_upload_part_with(&client, &storage.bucket, &part, start, expires_in)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "presigning probe failed; the SDK presigns parts");
                return retry();
            }
        };
        let ours = Self::from_probe(&sdk.url).and_then(|t| {
            let url = t.sign(signer, &Request::new(&part)?, &Stamp::new(start)?, 60)?;
            Some((t, url))
        });
        match ours {
            Some((t, p)) if p.url == sdk.url && p.headers == sdk.headers => {
                Learnt::Template(Arc::new(t))
            }
            _ => {
                tracing::warn!(
                    bucket = %storage.bucket,
                    "presigned part URLs for this endpoint are not reproduced here; the SDK presigns them"
                );
                Learnt::Sdk
            }
        }
    }

    /// The template in the probe's URL, if it has the expected shape.
    fn from_probe(url: &str) -> Option<Self> {
        let marker = format!(
            "/{PROBE_KEY}?x-id=UploadPart&partNumber=1&uploadId={PROBE_UPLOAD_ID}\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        );
        let (base, rest) = url.split_once(&marker)?;
        if base.contains(['?', '#']) {
            return None;
        }
        let (credential, _) = rest.split_once('&')?;
        // `{access key id}/{date}/{region}/{service}/aws4_request`, escaped: read
        // from the end (an access key id may hold a `/`). A region or service with
        // a `/` would be misread, and the probe's check would then fail.
        let mut parts = credential.rsplitn(4, "%2F");
        let (Some("aws4_request"), Some(service), Some(region), Some(_)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let unescape = |s: &str| {
            let plain = percent_decode_str(s).decode_utf8().ok()?.into_owned();
            (escape(&plain, QUERY_VALUE) == s).then_some(plain)
        };
        let region = unescape(region)?;
        let service = unescape(service)?;

        let uri: http::Uri = base.parse().ok()?;
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?.as_str();
        let path_start = scheme.len() + "://".len() + authority.len();
        if base.get(..path_start)? != format!("{scheme}://{authority}") {
            return None;
        }
        let path = &base[path_start..];
        if !(path.is_empty() || path.starts_with('/')) {
            return None;
        }
        // As the SDK's signer: no default port in the signed host.
        let default_port = matches!(
            (scheme, uri.port().as_ref().map(|p| p.as_str())),
            ("http", Some("80")) | ("https", Some("443"))
        );
        let host = if default_port { uri.host()? } else { authority };
        Some(Self {
            credential_tail: format!(
                "%2F{}%2F{}%2Faws4_request",
                escape(&region, QUERY_VALUE),
                escape(&service, QUERY_VALUE)
            ),
            scope_tail: format!("/{region}/{service}/aws4_request"),
            base: base.to_string(),
            path_start,
            host: host.to_string(),
            region,
            service,
        })
    }

    /// Presigns one part: the canonical request is hashed as it is written,
    /// from the pieces the URL is built of.
    fn sign(
        &self,
        signer: &Signer,
        r: &Request<'_>,
        stamp: &Stamp,
        expires: u64,
    ) -> Option<PresignedPart> {
        let (signed_headers, signed_headers_escaped) = r.signed_headers();
        let token = signer.token.as_deref();
        let mut url = String::with_capacity(
            self.base.len()
                + 3 * (r.key.len() + r.upload_id.len())
                + signer.credential_head.len()
                + self.credential_tail.len()
                + token.map_or(0, |t| t.len() + 22)
                + 300,
        );
        url.push_str(&self.base);
        url.push('/');
        url.extend(utf8_percent_encode(r.key, KEY_PATH));
        let path = self.path_start..url.len();
        url.push_str("?x-id=UploadPart&partNumber=");
        let number = push_with(&mut url, |u| write!(u, "{}", r.part_number));
        url.push_str("&uploadId=");
        let upload_id = push_with(&mut url, |u| {
            u.extend(utf8_percent_encode(r.upload_id, QUERY_VALUE));
            Ok(())
        });
        url.push_str("&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
        let credential = push_with(&mut url, |u| {
            u.push_str(&signer.credential_head);
            u.push_str(stamp.date());
            u.push_str(&self.credential_tail);
            Ok(())
        });
        url.push_str("&X-Amz-Date=");
        url.push_str(stamp.date_time());
        url.push_str("&X-Amz-Expires=");
        let expires = push_with(&mut url, |u| write!(u, "{expires}"));
        url.push_str("&X-Amz-SignedHeaders=");
        url.push_str(signed_headers_escaped);

        // The canonical request. Its query is sorted by escaped name (upper case first).
        let mut h = Sha256::new();
        h.update(b"PUT\n");
        h.update(&url[path]);
        h.update(b"\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
        h.update(&url[credential]);
        h.update(b"&X-Amz-Date=");
        h.update(stamp.date_time());
        h.update(b"&X-Amz-Expires=");
        h.update(&url[expires]);
        if let Some(token) = token {
            h.update(b"&X-Amz-Security-Token=");
            h.update(token);
        }
        h.update(b"&X-Amz-SignedHeaders=");
        h.update(signed_headers_escaped);
        h.update(b"&partNumber=");
        h.update(&url[number]);
        h.update(b"&uploadId=");
        h.update(&url[upload_id]);
        h.update(b"&x-id=UploadPart\n");
        let mut headers = BTreeMap::new();
        if let Some(n) = r.content_length {
            let n = n.to_string();
            h.update(b"content-length:");
            h.update(&n);
            h.update(b"\n");
            headers.insert("content-length".to_string(), n);
        }
        h.update(b"host:");
        h.update(&self.host);
        h.update(b"\n");
        if let Some((alg, value)) = r.checksum {
            h.update(alg.header());
            h.update(b":");
            h.update(value);
            h.update(b"\n");
            headers.insert(alg.header().to_string(), value.to_string());
        }
        h.update(b"\n");
        h.update(signed_headers);
        h.update(b"\nUNSIGNED-PAYLOAD");
        let hashed_request = hex(&h.finalize().into());

        let mut mac = signer.mac(self, stamp);
        mac.update(b"AWS4-HMAC-SHA256\n");
        mac.update(stamp.date_time().as_bytes());
        mac.update(b"\n");
        mac.update(stamp.date().as_bytes());
        mac.update(self.scope_tail.as_bytes());
        mac.update(b"\n");
        mac.update(&hashed_request);
        let signature = hex(&mac.finalize().into_bytes().into());

        url.push_str("&X-Amz-Signature=");
        url.extend(signature.iter().map(|&b| b as char));
        if let Some(token) = token {
            url.push_str("&X-Amz-Security-Token=");
            url.push_str(token);
        }
        (url.len() <= MAX_URL_LEN).then_some(PresignedPart { url, headers })
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
