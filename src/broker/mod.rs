//! The upload operations, shared by every HTTP front-end: load the record, ask
//! the domain, call storage, persist. Mutating operations run to the end in a
//! task of their own, so a client that hangs up mid-request cannot leave a
//! provider upload without its record or an upload stuck in `completing`.

mod abort;
pub mod cache;
mod complete;
mod create;
pub mod record;
mod sign;
mod status;

use crate::db::{self, Fence};
use crate::domain::access::Access;
use crate::domain::checksum::{ChecksumAlgorithm, PartChecksum};
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::{PartNumber, PartPlan, PlanLimits};
use crate::domain::parts::{conflicts, require_matching};
use crate::domain::request::{ContentType, FileName, Fingerprint, Metadata};
use crate::domain::token::{ResumeToken, TokenKey};
use crate::domain::upload::{Origin, Progress, Reconciliation, StoredPart, Upload, UploadStatus};
use crate::error::{ApiError, EXPIRED_MESSAGE, GONE_AT_PROVIDER_MESSAGE};
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use uuid::Uuid;

/// Settings of the upload operations.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub plan_limits: PlanLimits,
    pub upload_ttl: Duration,
    pub part_url_ttl: Duration,
    /// Longest life a client may ask for its part URLs (`urlTtlSeconds`).
    pub max_part_url_ttl: Duration,
    pub sign_window: u32,
    pub key_prefix: String,
    /// How long a completer (or an abort) holds its claim before another may
    /// take over; renewed every third of it while the claimant works.
    pub completion_lease: Duration,
    /// Most creates, completions and aborts running at once, detached from their requests.
    pub max_background_tasks: usize,
    /// What a create is held to.
    pub quotas: db::Quotas,
    /// What the provider takes (POST uploads, part checksums); `plan_limits`
    /// are already within its sizes.
    pub provider: crate::domain::provider::ProviderRules,
    /// Most active uploads whose signing facts are kept in memory (0: none).
    pub upload_cache: usize,
}

/// How long a download URL lives.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);
/// Most uploads a fingerprint lookup answers with.
pub const FINGERPRINT_LOOKUP_LIMIT: i64 = 20;
/// Uploads a fingerprint lookup reconciles with the provider at once.
pub const FINGERPRINT_LOOKUP_CONCURRENCY: usize = 4;

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub filename: FileName,
    pub size: u64,
    pub part_size: Option<u64>,
    pub content_type: ContentType,
    pub metadata: Metadata,
    pub fingerprint: Option<Fingerprint>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// How long the part URLs of the answer live (`urlTtlSeconds`), if asked.
    pub url_ttl_seconds: Option<u64>,
}

/// A part a client asks to sign, with its checksum for checksum-bound uploads.
#[derive(Debug, Clone)]
pub struct PartRequest {
    pub part_number: u32,
    pub checksum: Option<String>,
}

pub use crate::domain::parts::{ConflictingPart, PartClaim};

/// How a request names an upload: by resume token (the native API), or by
/// the provider's upload id and the object key (the Companion-compatible API).
#[derive(Debug, Clone)]
pub enum UploadRef {
    Token(String),
    Provider { upload_id: String, key: String },
}

/// The parts a completion is asked for.
#[derive(Debug, Clone)]
pub enum CompleteWith {
    /// Native: complete from ListParts; claimed parts, if any, must match it.
    Listed(Option<Vec<PartClaim>>),
    /// Companion: exactly these parts (number and ETag), checked against ListParts.
    Given(Vec<PartClaim>),
}

/// A presigned part URL as clients see it.
#[derive(Debug, Clone)]
pub struct SignedPart {
    pub part_number: PartNumber,
    pub url: String,
    /// Bytes to PUT; unknown for uploads without a declared size.
    pub size: Option<u64>,
    pub expires_at: DateTime<Utc>,
    pub headers: BTreeMap<String, String>,
}

/// An upload held against the provider's part list.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub upload: Upload,
    pub uploaded: Vec<StoredPart>,
    pub missing: Vec<PartNumber>,
    pub progress: Progress,
    /// Stored parts that disagree with the client's own account (resume).
    pub conflicting: Vec<ConflictingPart>,
}

/// A presigned download of a finished object.
#[derive(Debug, Clone)]
pub struct DownloadUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub etag: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    storage: Storage,
    tokens: TokenKey,
    settings: BrokerSettings,
    /// Permits for work that runs to the end without its request.
    background: Arc<tokio::sync::Semaphore>,
    /// Signing facts of active uploads (see [`cache`]).
    cache: Arc<cache::UploadCache>,
}

impl Broker {
    pub fn new(db: PgPool, storage: Storage, tokens: TokenKey, settings: BrokerSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                storage,
                tokens,
                background: Arc::new(tokio::sync::Semaphore::new(settings.max_background_tasks)),
                cache: Arc::new(cache::UploadCache::new(settings.upload_cache)),
                settings,
            }),
        }
    }

    pub fn db(&self) -> &PgPool {
        &self.inner.db
    }
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }
    pub fn settings(&self) -> &BrokerSettings {
        &self.inner.settings
    }
    /// The cache of active uploads' signing facts: `serve` runs its
    /// [`cache::UploadCache::keep_fresh`]; without it the cache is never used.
    pub fn upload_cache(&self) -> &Arc<cache::UploadCache> {
        &self.inner.cache
    }

    pub fn token_for(&self, upload: &Upload) -> ResumeToken {
        self.inner.tokens.token_for(upload.id)
    }

    pub(super) fn now() -> DateTime<Utc> {
        Utc::now()
    }

    // ------------------------------------------------------------ load

    /// The upload a resume token names, if the caller may see it (its tenant's;
    /// for a grant, its subject's). Expired uploads answer 410.
    pub async fn load(&self, access: &Access, token: &str) -> Result<Upload, ApiError> {
        self.load_ref(access, &UploadRef::Token(token.to_string()))
            .await
    }

    /// The upload a reference names, if the caller may see it: 404 otherwise,
    /// exactly as for one that does not exist. Expired uploads answer 410.
    pub async fn load_ref(&self, access: &Access, r: &UploadRef) -> Result<Upload, ApiError> {
        self.load_noting(access, r, true).await
    }

    /// As [`Broker::load_ref`], for a caller that loaded the upload before in
    /// this request (a completion waiting for another's outcome): the request's
    /// log line names the upload once.
    pub(super) async fn load_ref_again(
        &self,
        access: &Access,
        r: &UploadRef,
    ) -> Result<Upload, ApiError> {
        self.load_noting(access, r, false).await
    }

    async fn load_noting(
        &self,
        access: &Access,
        r: &UploadRef,
        note: bool,
    ) -> Result<Upload, ApiError> {
        let upload = self
            .fetch(self.named(r)?)
            .await?
            .ok_or(ApiError::NotFound)?;
        self.admit(access, r, &upload, note)?;
        Ok(upload)
    }

    /// As [`Broker::load_ref`], from the cache of active uploads when it has
    /// the upload: for signing, which needs only what does not change while
    /// an upload is active (and its status, which the cache keeps right).
    pub(super) async fn load_for_signing(
        &self,
        access: &Access,
        r: &UploadRef,
    ) -> Result<Arc<Upload>, ApiError> {
        let cache = &self.inner.cache;
        let named = self.named(r)?;
        let cached = match named {
            Named::Id(id) => cache.get(id),
            Named::Provider(upload_id) => cache.get_by_provider(upload_id),
        };
        let upload = match cached {
            Some(u) => u,
            None => {
                let epoch = cache.epoch();
                let u = self.fetch(named).await?.ok_or(ApiError::NotFound)?;
                self.admit(access, r, &u, true)?;
                cache.fill(epoch, &u);
                return Ok(Arc::new(u));
            }
        };
        self.admit(access, r, &upload, true)?;
        Ok(upload)
    }

    /// What a reference names: a token is verified here, once (404 when it
    /// is not one of ours).
    fn named<'r>(&self, r: &'r UploadRef) -> Result<Named<'r>, ApiError> {
        Ok(match r {
            UploadRef::Token(token) => {
                Named::Id(self.inner.tokens.verify(token).ok_or(ApiError::NotFound)?)
            }
            UploadRef::Provider { upload_id, .. } => Named::Provider(upload_id),
        })
    }

    /// The row a reference names, as stored. One read in another status than
    /// active drops the upload from the signing cache at once (its
    /// notification may still be on its way).
    async fn fetch(&self, named: Named<'_>) -> Result<Option<Upload>, ApiError> {
        let row = match named {
            Named::Id(id) => db::get_upload(&self.inner.db, id).await?,
            Named::Provider(upload_id) => {
                db::get_companion_upload(&self.inner.db, self.inner.storage.bucket(), upload_id)
                    .await?
            }
        };
        if let Some(u) = &row {
            self.inner.cache.saw(u);
        }
        Ok(row)
    }

    /// Whether the caller may see the upload a reference found: 404 when not;
    /// 410 when it expired.
    /// `note`: name the upload in the request's log line (once per request).
    fn admit(
        &self,
        access: &Access,
        r: &UploadRef,
        upload: &Upload,
        note: bool,
    ) -> Result<(), ApiError> {
        let named = match r {
            // Tokens are only ever handed out for native uploads.
            UploadRef::Token(_) => upload.origin == Origin::Native,
            // Only Companion uploads answer to (uploadId, key): both are visible
            // in every part URL, so they must not reach a native upload.
            UploadRef::Provider { upload_id, key } => {
                upload.origin == Origin::Companion
                    && upload.bucket == self.inner.storage.bucket()
                    && &upload.provider_upload_id == upload_id
                    && upload.key.as_str() == key
            }
        };
        if !named || !access.sees(upload) {
            return Err(ApiError::NotFound);
        }
        if note {
            tracing::Span::current().record("upload_id", tracing::field::display(upload.id));
        }
        if upload.is_expired(Self::now()) {
            return Err(ApiError::Expired(EXPIRED_MESSAGE));
        }
        Ok(())
    }

    /// Runs `work` while holding `upload`'s claim: the lease is renewed every
    /// third of it, so a completion or abort that takes long keeps its claim. A
    /// renewal that finds the claim gone is logged (the claimant's own writes
    /// are fenced and will change nothing).
    pub(super) async fn holding<T>(
        &self,
        upload: &Upload,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let lease = self.inner.settings.completion_lease;
        let fence = Fence::of(upload);
        let renew = async {
            let mut every = tokio::time::interval(lease / 3);
            every.tick().await; // the first tick is immediate
            loop {
                every.tick().await;
                match db::renew_lease(&self.inner.db, upload.id, fence, Self::now(), lease).await {
                    Ok(true) => tracing::debug!(upload_id = %upload.id, "lease renewed"),
                    Ok(false) => {
                        tracing::error!(upload_id = %upload.id, "lost the claim on this upload while working on it");
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        tracing::warn!(upload_id = %upload.id, error = %e, "could not renew the lease; will retry")
                    }
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => out,
            _ = renew => unreachable!("renewal never ends"),
        }
    }

    /// Runs `fut` in a task of its own, so it finishes even if the caller goes
    /// away. Such tasks are bounded (503 beyond the limit); an error of one
    /// whose caller is gone is logged here, since no response will carry it.
    pub(super) async fn run_to_end<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .inner
            .background
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::Overloaded(
                    "too many completions and aborts in progress; try again shortly",
                )
            })?;
        let span = tracing::Span::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let out = fut.await;
                drop(permit);
                if let Err(Err(e)) = tx.send(out) {
                    if e.status().is_server_error() {
                        tracing::error!(error = %e, "detached work failed after its request had gone");
                    }
                }
            },
            span,
        ));
        rx.await
            .unwrap_or_else(|_| Err(ApiError::Internal("a background task failed".into())))
    }

    pub(super) fn require_active(upload: &Upload) -> Result<(), ApiError> {
        match upload.status {
            UploadStatus::Active => Ok(()),
            UploadStatus::Expired | UploadStatus::Expiring => {
                Err(ApiError::Expired(EXPIRED_MESSAGE))
            }
            other => Err(ApiError::NotActive(other)),
        }
    }
}

/// The row an [`UploadRef`] names, once its token is verified.
#[derive(Clone, Copy)]
enum Named<'r> {
    Id(Uuid),
    /// A Companion upload's provider upload id (its key is checked on the row).
    Provider(&'r str),
}

/// The part `n` of an upload: within its plan, or 1 to 10,000 without one.
pub(super) fn part_of(upload: &Upload, n: u32) -> Result<PartNumber, ApiError> {
    match upload.plan {
        Some(plan) => plan.part(n).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "part {n} is out of range; this upload has parts 1 to {}",
                plan.part_count()
            ))
        }),
        None => PartNumber::new(n).ok_or_else(|| {
            ApiError::InvalidRequest(format!("part {n} is out of range: parts are 1 to 10000"))
        }),
    }
}
