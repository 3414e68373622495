//! The upload operations, shared by every HTTP front-end: load the record, ask
//! the domain, call storage, persist. Mutating operations run to the end in a
//! task of their own, so a client that hangs up mid-request cannot leave a
//! provider upload without its record or an upload stuck in `completing`.

use crate::db::{self, FinishedObject};
use crate::domain::checksum::{ChecksumAlgorithm, PartChecksum};
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::{PartNumber, PartPlan, PlanLimits};
use crate::domain::request::{ContentType, FileName, Fingerprint, Metadata};
use crate::domain::token::{ResumeToken, TokenKey};
use crate::domain::upload::{
    bare_etag, Progress, Reconciliation, StoredPart, Upload, UploadStatus,
};
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
    pub sign_window: u32,
    pub key_prefix: String,
    /// How long a completer holds an upload in `completing` before another may take over.
    pub completion_lease: Duration,
    /// Whether the provider takes POST-policy uploads (S3 does; R2 does not).
    pub post_uploads: bool,
}

/// How long a download URL lives.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);
/// Most uploads a fingerprint lookup answers with.
pub const FINGERPRINT_LOOKUP_LIMIT: i64 = 20;

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
}

/// A part a client asks to sign, with its checksum for checksum-bound uploads.
#[derive(Debug, Clone)]
pub struct PartRequest {
    pub part_number: u32,
    pub checksum: Option<String>,
}

/// What a client says it has uploaded of a part (resume, complete).
#[derive(Debug, Clone, Default)]
pub struct PartClaim {
    pub part_number: u32,
    pub etag: Option<String>,
    pub checksum: Option<String>,
    pub size: Option<u64>,
}

/// A stored part that disagrees with what the client says it uploaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictingPart {
    pub part_number: u32,
    /// `etag`, `checksum` or `size`.
    pub field: &'static str,
    pub expected: String,
    pub stored: String,
}

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
}

/// Compares what a client says of its parts with what storage holds.
fn conflicts(stored: &[StoredPart], claims: &[PartClaim]) -> Vec<ConflictingPart> {
    let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.part_number, p)).collect();
    let mut out = Vec::new();
    for c in claims {
        let Some(s) = by_number.get(&c.part_number) else {
            continue;
        };
        let conflict = |field, expected: &str, stored: &str| ConflictingPart {
            part_number: c.part_number,
            field,
            expected: expected.to_string(),
            stored: stored.to_string(),
        };
        if let Some(e) = &c.etag {
            if bare_etag(e) != bare_etag(&s.etag) {
                out.push(conflict("etag", bare_etag(e), bare_etag(&s.etag)));
                continue;
            }
        }
        if let (Some(e), Some(have)) = (&c.checksum, &s.checksum) {
            if e.trim() != have {
                out.push(conflict("checksum", e.trim(), have));
                continue;
            }
        }
        if let Some(size) = c.size {
            if size != s.size {
                out.push(conflict("size", &size.to_string(), &s.size.to_string()));
            }
        }
    }
    out
}

impl Broker {
    pub fn new(db: PgPool, storage: Storage, tokens: TokenKey, settings: BrokerSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                storage,
                tokens,
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

    pub fn token_for(&self, upload: &Upload) -> ResumeToken {
        self.inner.tokens.token_for(upload.id)
    }

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    // ------------------------------------------------------------ create

    /// Creates the provider upload, records it, and signs the first parts
    /// (none for checksum-bound uploads: those are signed with their checksums).
    pub async fn create(
        &self,
        tenant: &str,
        req: NewUpload,
    ) -> Result<(Upload, Vec<SignedPart>), ApiError> {
        let plan = PartPlan::new(req.size, req.part_size, self.inner.settings.plan_limits)?;
        let this = self.clone();
        let tenant = tenant.to_string();
        spawn_to_end(async move { this.create_inner(tenant, req, plan).await }).await
    }

    async fn create_inner(
        &self,
        tenant: String,
        req: NewUpload,
        plan: PartPlan,
    ) -> Result<(Upload, Vec<SignedPart>), ApiError> {
        let s = &self.inner.settings;
        let upload = self
            .start_upload(
                tenant,
                &req.filename,
                &req.content_type,
                &req.metadata,
                Some(plan),
                req.fingerprint.map(|f| f.as_str().to_string()),
                req.checksum_algorithm,
            )
            .await?;
        let first: Vec<(PartNumber, Option<PartChecksum>)> = if upload.checksum_algorithm.is_some()
        {
            Vec::new()
        } else {
            plan.parts()
                .take(s.sign_window as usize)
                .map(|n| (n, None))
                .collect()
        };
        match self.sign_parts(&upload, &first).await {
            Ok(parts) => Ok((upload, parts)),
            Err(e) => {
                // Without its token the client can never use it: take it back.
                let _ = db::delete_upload(&self.inner.db, upload.id).await;
                self.abort_orphan(&upload).await;
                Err(e)
            }
        }
    }

    /// Creates the provider upload and records it; if the record cannot be
    /// written, the provider upload is aborted (no orphan on any error path).
    #[allow(clippy::too_many_arguments)]
    async fn start_upload(
        &self,
        tenant: String,
        filename: &FileName,
        content_type: &ContentType,
        metadata: &Metadata,
        plan: Option<PartPlan>,
        fingerprint: Option<String>,
        checksum_algorithm: Option<ChecksumAlgorithm>,
    ) -> Result<Upload, ApiError> {
        let s = &self.inner.settings;
        let now = Self::now().trunc_subsecs(0);
        let id = Uuid::now_v7();
        let key = ObjectKey::for_upload(&s.key_prefix, now, id, filename.as_str());
        let storage = &self.inner.storage;
        let provider_upload_id = storage
            .create_multipart_upload(&key, content_type, metadata, checksum_algorithm)
            .await?;
        let upload = Upload {
            id,
            tenant,
            status: UploadStatus::Active,
            bucket: storage.bucket().to_string(),
            key,
            provider_upload_id,
            filename: filename.as_str().to_string(),
            content_type: content_type.as_str().to_string(),
            plan,
            metadata: metadata.as_map().clone(),
            fingerprint,
            checksum_algorithm,
            etag: None,
            checksum: None,
            object_size: None,
            completed_parts: None,
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(s.upload_ttl).unwrap_or(chrono::Duration::days(7)),
            lease_until: None,
        };
        if let Err(e) = db::insert_upload(&self.inner.db, &upload).await {
            self.abort_orphan(&upload).await;
            return Err(e.into());
        }
        tracing::info!(upload_id = %upload.id, size = ?plan.map(|p| p.size()), parts = ?plan.map(|p| p.part_count()), "upload created");
        crate::metrics::upload_created();
        Ok(upload)
    }

    async fn abort_orphan(&self, upload: &Upload) {
        if let Err(e) = self
            .inner
            .storage
            .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
            .await
        {
            tracing::error!(upload_id = %upload.id, error = %e, "could not abort a provider upload after a failed create");
        }
    }

    // ------------------------------------------------------------ load

    /// The upload a resume token names, if it is the tenant's. Expired uploads answer 410.
    pub async fn load(&self, tenant: &str, token: &str) -> Result<Upload, ApiError> {
        self.load_ref(tenant, &UploadRef::Token(token.to_string()))
            .await
    }

    /// The upload a reference names, if it is the tenant's: 404 otherwise,
    /// exactly as for one that does not exist. Expired uploads answer 410.
    pub async fn load_ref(&self, tenant: &str, r: &UploadRef) -> Result<Upload, ApiError> {
        let upload = match r {
            UploadRef::Token(token) => {
                let id = self.inner.tokens.verify(token).ok_or(ApiError::NotFound)?;
                db::get_upload(&self.inner.db, id)
                    .await?
                    // Tokens are only ever handed out for uploads with a plan.
                    .filter(|u| u.plan.is_some())
            }
            UploadRef::Provider { upload_id, key } => db::get_by_provider_upload_id(
                &self.inner.db,
                self.inner.storage.bucket(),
                upload_id,
            )
            .await?
            .filter(|u| u.key.as_str() == key),
        }
        .filter(|u| u.tenant == tenant)
        .ok_or(ApiError::NotFound)?;
        tracing::Span::current().record("upload_id", tracing::field::display(upload.id));
        if upload.is_expired(Self::now()) {
            return Err(ApiError::Expired(EXPIRED_MESSAGE));
        }
        Ok(upload)
    }

    fn require_active(upload: &Upload) -> Result<(), ApiError> {
        match upload.status {
            UploadStatus::Active => Ok(()),
            UploadStatus::Expired | UploadStatus::Expiring => {
                Err(ApiError::Expired(EXPIRED_MESSAGE))
            }
            other => Err(ApiError::NotActive(other)),
        }
    }

    // ------------------------------------------------------------ sign

    /// Presigns `UploadPart` for the given parts of an active upload.
    pub async fn sign(
        &self,
        tenant: &str,
        upload: &UploadRef,
        requests: &[PartRequest],
    ) -> Result<Vec<SignedPart>, ApiError> {
        let upload = self.load_ref(tenant, upload).await?;
        Self::require_active(&upload)?;
        let mut parts = Vec::with_capacity(requests.len());
        let mut seen = std::collections::BTreeSet::new();
        for r in requests {
            let n = part_of(&upload, r.part_number)?;
            if !seen.insert(r.part_number) {
                return Err(ApiError::InvalidRequest(format!(
                    "partNumbers: {} is repeated",
                    r.part_number
                )));
            }
            let checksum = match (upload.checksum_algorithm, &r.checksum) {
                (Some(alg), Some(c)) => Some(PartChecksum::parse(alg, c).map_err(|e| {
                    ApiError::InvalidRequest(format!("parts: part {}: {e}", r.part_number))
                })?),
                (Some(alg), None) => {
                    return Err(ApiError::InvalidRequest(format!(
                        "this upload binds a {alg} checksum to every part: send {{\"parts\": [{{\"partNumber\": …, \"checksum\": …}}]}}"
                    )))
                }
                (None, Some(_)) => {
                    return Err(ApiError::InvalidRequest(
                        "this upload was created without checksumAlgorithm: send partNumbers, without checksums".into(),
                    ))
                }
                (None, None) => None,
            };
            parts.push((n, checksum));
        }
        self.sign_parts(&upload, &parts).await
    }

    async fn sign_parts(
        &self,
        upload: &Upload,
        parts: &[(PartNumber, Option<PartChecksum>)],
    ) -> Result<Vec<SignedPart>, ApiError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let (start, seconds, expires_at) =
            self.url_validity(upload, self.inner.settings.part_url_ttl)?;
        let mut out = Vec::with_capacity(parts.len());
        for (n, checksum) in parts {
            let p = self
                .inner
                .storage
                .presign_upload_part(
                    &upload.key,
                    &upload.provider_upload_id,
                    *n,
                    upload.checksum_algorithm.zip(checksum.as_ref()),
                    start,
                    seconds,
                )
                .await?;
            crate::metrics::part_urls_signed(1);
            out.push(SignedPart {
                part_number: *n,
                url: p.url,
                size: upload.plan.map(|p| p.part_len(*n)),
                expires_at,
                headers: p.headers,
            });
        }
        Ok(out)
    }

    /// When a presigned URL starts and for how long it lives: whole seconds, so
    /// that the URL's own expiry equals `expiresAt` exactly, and never past the
    /// upload's own expiry (completed uploads have none).
    fn url_validity(
        &self,
        upload: &Upload,
        ttl: Duration,
    ) -> Result<(std::time::SystemTime, Duration, DateTime<Utc>), ApiError> {
        let start = Self::now().trunc_subsecs(0);
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        let mut seconds = ttl.num_seconds();
        if upload.status != UploadStatus::Completed {
            seconds = seconds.min((upload.expires_at - start).num_seconds());
        }
        if seconds < 1 {
            return Err(ApiError::Expired(EXPIRED_MESSAGE));
        }
        let start_sys = UNIX_EPOCH + Duration::from_secs(start.timestamp() as u64);
        Ok((
            start_sys,
            Duration::from_secs(seconds as u64),
            start + chrono::Duration::seconds(seconds),
        ))
    }

    // ------------------------------------------------------------ status and resume

    /// The upload with what the provider holds of it.
    pub async fn status(&self, tenant: &str, upload: &UploadRef) -> Result<UploadState, ApiError> {
        let upload = self.load_ref(tenant, upload).await?;
        self.state_of(upload).await
    }

    async fn state_of(&self, upload: Upload) -> Result<UploadState, ApiError> {
        match upload.status {
            UploadStatus::Active | UploadStatus::Completing => {
                match self
                    .inner
                    .storage
                    .list_parts(&upload.key, &upload.provider_upload_id)
                    .await
                {
                    Ok(stored) => Ok(Self::reconciled(upload, &stored)),
                    Err(StorageError::NoSuchUpload) => self.after_no_such_upload(upload.id).await,
                    Err(e) => Err(e.into()),
                }
            }
            UploadStatus::Completed => Ok(Self::finished(upload)),
            UploadStatus::Aborted | UploadStatus::Expired | UploadStatus::Expiring => {
                Ok(Self::reconciled(upload, &[]))
            }
        }
    }
    /// ListParts said NoSuchUpload: someone completed or aborted the upload a
    /// moment ago, or the provider lost it. Answer from the fresh record; only
    /// an upload that is still `active` has really been lost.
    async fn after_no_such_upload(&self, id: Uuid) -> Result<UploadState, ApiError> {
        // A completion may be between its provider call and its record: give it
        // a moment to land.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let fresh = db::get_upload(&self.inner.db, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            match fresh.status {
                UploadStatus::Completed => return Ok(Self::finished(fresh)),
                UploadStatus::Aborted => return Ok(Self::reconciled(fresh, &[])),
                UploadStatus::Completing if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                UploadStatus::Completing => return Ok(Self::reconciled(fresh, &[])),
                UploadStatus::Active => {
                    self.storage_lost(&fresh).await?;
                    return Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE));
                }
                UploadStatus::Expired | UploadStatus::Expiring => {
                    return Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
                }
            }
        }
    }

    fn reconciled(upload: Upload, stored: &[StoredPart]) -> UploadState {
        let Some(plan) = upload.plan else {
            // No plan to hold the parts against: report them as they are.
            let progress = Progress::new(
                stored.iter().map(|p| p.size).sum(),
                0,
                stored.len() as u32,
                0,
            );
            return UploadState {
                uploaded: stored.to_vec(),
                missing: Vec::new(),
                progress,
                upload,
                conflicting: Vec::new(),
            };
        };
        let r = Reconciliation::new(&plan, stored);
        if !r.wrong_size.is_empty() {
            tracing::warn!(upload_id = %upload.id, parts = ?r.wrong_size, "stored parts with a size that does not fit the plan");
        }
        UploadState {
            progress: r.progress(&plan),
            uploaded: r.uploaded,
            missing: r.missing,
            upload,
            conflicting: Vec::new(),
        }
    }

    fn finished(upload: Upload) -> UploadState {
        let uploaded = upload.completed_parts.clone().unwrap_or_default();
        let (size, count) = upload
            .plan
            .map(|p| (p.size(), p.part_count()))
            .unwrap_or((upload.object_size.unwrap_or(0), uploaded.len() as u32));
        UploadState {
            progress: Progress::new(size, size, count, count),
            uploaded,
            missing: Vec::new(),
            upload,
            conflicting: Vec::new(),
        }
    }

    /// The provider no longer has an upload we think is active: record it as
    /// expired (the client is told 410, never a 502 or a stuck row).
    async fn storage_lost(&self, upload: &Upload) -> Result<(), ApiError> {
        tracing::warn!(upload_id = %upload.id, "the storage provider no longer has this upload; marking it expired");
        if db::mark_expired(&self.inner.db, upload.id, upload.status)
            .await?
            .is_some()
        {
            crate::metrics::upload_expired("provider_gone");
        }
        Ok(())
    }

    /// Reconciles with the provider and signs the first missing parts. Parts
    /// whose stored ETag, checksum or size disagree with the client's `claims`
    /// are reported as conflicting and treated as missing, so the client
    /// re-sends them. Checksum-bound uploads get no URLs here (the client signs
    /// the missing parts with their checksums through `…/parts`).
    pub async fn resume(
        &self,
        tenant: &str,
        token: &str,
        claims: &[PartClaim],
    ) -> Result<(UploadState, Vec<SignedPart>), ApiError> {
        let upload = self.load(tenant, token).await?;
        Self::require_active(&upload)?;
        for c in claims {
            part_of(&upload, c.part_number)?;
        }
        let mut state = self.state_of(upload).await?;
        Self::require_active(&state.upload)?;
        state.conflicting = conflicts(&state.uploaded, claims);
        if !state.conflicting.is_empty() {
            tracing::warn!(upload_id = %state.upload.id, parts = ?state.conflicting, "stored parts disagree with the client");
            let bad: Vec<u32> = state.conflicting.iter().map(|c| c.part_number).collect();
            state.uploaded.retain(|p| !bad.contains(&p.part_number));
            for n in &bad {
                if let Some(n) = state.upload.plan.and_then(|p| p.part(*n)) {
                    state.missing.push(n);
                }
            }
            state.missing.sort();
            state.missing.dedup();
            if let Some(plan) = state.upload.plan {
                state.progress = Progress::new(
                    state.uploaded.iter().map(|p| p.size).sum(),
                    plan.size(),
                    state.uploaded.len() as u32,
                    plan.part_count(),
                );
            }
        }
        let window: Vec<(PartNumber, Option<PartChecksum>)> =
            if state.upload.checksum_algorithm.is_some() {
                Vec::new()
            } else {
                state
                    .missing
                    .iter()
                    .take(self.inner.settings.sign_window as usize)
                    .map(|n| (*n, None))
                    .collect()
            };
        let parts = self.sign_parts(&state.upload, &window).await?;
        Ok((state, parts))
    }

    /// A tenant's active uploads created with `fingerprint`, newest first, each
    /// reconciled with the provider (uploads it no longer has are left out).
    pub async fn find_by_fingerprint(
        &self,
        tenant: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Vec<UploadState>, ApiError> {
        let found = db::find_by_fingerprint(
            &self.inner.db,
            tenant,
            fingerprint.as_str(),
            Self::now(),
            FINGERPRINT_LOOKUP_LIMIT,
        )
        .await?;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, upload) in found.into_iter().enumerate() {
            let this = self.clone();
            tasks.spawn(async move { (i, this.state_of(upload).await) });
        }
        let mut states = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(|e| ApiError::Internal(format!("task failed: {e}")))? {
                (i, Ok(state)) if state.upload.status == UploadStatus::Active => {
                    states.push((i, state))
                }
                (_, Ok(_)) | (_, Err(ApiError::Expired(_))) => {}
                (_, Err(e)) => return Err(e),
            }
        }
        states.sort_by_key(|(i, _)| *i);
        Ok(states.into_iter().map(|(_, s)| s).collect())
    }

    // ------------------------------------------------------------ complete

    /// Completes the upload exactly once, however many callers ask at once.
    pub async fn complete(
        &self,
        tenant: &str,
        upload: UploadRef,
        with: CompleteWith,
    ) -> Result<Upload, ApiError> {
        let this = self.clone();
        let tenant = tenant.to_string();
        spawn_to_end(async move { this.complete_inner(&tenant, &upload, &with).await }).await
    }

    async fn complete_inner(
        &self,
        tenant: &str,
        r: &UploadRef,
        with: &CompleteWith,
    ) -> Result<Upload, ApiError> {
        let lease = self.inner.settings.completion_lease;
        let deadline = tokio::time::Instant::now() + lease + Duration::from_secs(5);
        let claims = match with {
            CompleteWith::Listed(c) => c.as_deref().unwrap_or_default(),
            CompleteWith::Given(c) => c.as_slice(),
        };
        loop {
            let upload = self.load_ref(tenant, r).await?;
            match upload.status {
                UploadStatus::Completed => return Ok(upload),
                UploadStatus::Aborted => return Err(ApiError::NotActive(UploadStatus::Aborted)),
                UploadStatus::Expired | UploadStatus::Expiring => {
                    return Err(ApiError::Expired(EXPIRED_MESSAGE))
                }
                UploadStatus::Completing if upload.lease_until.is_some_and(|l| l > Self::now()) => {
                    // Someone else is completing it: wait for their outcome.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::Internal(
                            "timed out waiting for a completion in progress".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                UploadStatus::Active | UploadStatus::Completing => {}
            }
            let mut seen = std::collections::BTreeSet::new();
            for p in claims {
                part_of(&upload, p.part_number)?;
                if !seen.insert(p.part_number) {
                    return Err(ApiError::InvalidRequest(format!(
                        "parts: part {} is repeated",
                        p.part_number
                    )));
                }
            }
            let Some(mine) =
                db::claim_completion(&self.inner.db, upload.id, Self::now(), lease).await?
            else {
                continue; // someone else moved it first; look again
            };
            let result = match (mine.plan, with) {
                (Some(plan), CompleteWith::Listed(claimed)) => {
                    self.complete_claimed(&mine, plan, claimed.as_deref()).await
                }
                (plan, CompleteWith::Given(given)) => self.complete_given(&mine, plan, given).await,
                (None, CompleteWith::Listed(_)) => Err(ApiError::Internal(
                    "a native completion of an upload without a plan".into(),
                )),
            };
            if result.is_err() {
                // Completable again, unless it was settled as completed or expired.
                db::release_completion(&self.inner.db, mine.id).await?;
            }
            return result;
        }
    }
    async fn complete_claimed(
        &self,
        upload: &Upload,
        plan: PartPlan,
        claimed: Option<&[PartClaim]>,
    ) -> Result<Upload, ApiError> {
        let storage = &self.inner.storage;
        let stored = match storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(stored) => stored,
            Err(StorageError::NoSuchUpload) => return self.recover_gone(upload).await,
            Err(e) => return Err(e.into()),
        };
        let r = Reconciliation::new(&plan, &stored);
        if let Some(claimed) = claimed {
            require_matching(&stored, claimed)?;
        }
        if !r.missing.is_empty() {
            let missing: Vec<u32> = r.missing.iter().map(|n| n.get()).collect();
            if r.wrong_size.len() == r.missing.len() {
                return Err(ApiError::PartMismatch {
                    message:
                        "stored part sizes do not match the part plan; re-upload the listed parts"
                            .into(),
                    wrong_size: r.wrong_size,
                    etag_mismatch: Vec::new(),
                });
            }
            return Err(ApiError::PartsMissing {
                missing,
                wrong_size: r.wrong_size,
            });
        }
        if upload.checksum_algorithm.is_some() {
            if let Some(p) = r.uploaded.iter().find(|p| p.checksum.is_none()) {
                return Err(ApiError::PartMismatch {
                    message: format!(
                        "part {} has no stored checksum; re-upload it",
                        p.part_number
                    ),
                    wrong_size: Vec::new(),
                    etag_mismatch: vec![p.part_number],
                });
            }
        }
        let total: u64 = r.uploaded.iter().map(|p| p.size).sum();
        if total != plan.size() {
            return Err(ApiError::Internal(format!(
                "parts add up to {total}, not {}",
                plan.size()
            )));
        }
        self.finish(upload, plan, &r.uploaded, None).await
    }

    /// Companion-style completion: exactly the given parts, each matching what
    /// storage holds, numbered 1 to N, all but the last of one size of at
    /// least 5 MiB (what S3 and R2 accept), and fitting the plan if there is one.
    async fn complete_given(
        &self,
        upload: &Upload,
        plan: Option<PartPlan>,
        given: &[PartClaim],
    ) -> Result<Upload, ApiError> {
        let storage = &self.inner.storage;
        let stored = match storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(stored) => stored,
            Err(StorageError::NoSuchUpload) => return self.recover_gone(upload).await,
            Err(e) => return Err(e.into()),
        };
        let by_number: BTreeMap<u32, &StoredPart> =
            stored.iter().map(|p| (p.part_number, p)).collect();
        let mut given: Vec<PartClaim> = given.to_vec();
        given.sort_by_key(|p| p.part_number);
        if given.is_empty() {
            return Err(ApiError::InvalidRequest(
                "parts: at least one part is needed".into(),
            ));
        }
        let missing: Vec<u32> = given
            .iter()
            .filter(|g| !by_number.contains_key(&g.part_number))
            .map(|g| g.part_number)
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::PartsMissing {
                missing,
                wrong_size: Vec::new(),
            });
        }
        require_matching(&stored, &given)?;
        if given
            .iter()
            .enumerate()
            .any(|(i, g)| g.part_number != i as u32 + 1)
        {
            return Err(ApiError::InvalidRequest(
                "parts: part numbers must run from 1 without gaps".into(),
            ));
        }
        let parts: Vec<StoredPart> = given
            .iter()
            .map(|g| by_number[&g.part_number].clone())
            .collect();
        let total: u64 = parts.iter().map(|p| p.size).sum();
        let part_size = parts[0].size;
        let (last, rest) = parts.split_last().expect("at least one part");
        if let Some(bad) = rest
            .iter()
            .find(|p| p.size != part_size || p.size < crate::domain::part_plan::MIN_PART_SIZE)
        {
            return Err(ApiError::PartMismatch {
                message: format!(
                    "part {} is {} bytes: all parts but the last must have the same size, at least 5 MiB",
                    bad.part_number, bad.size
                ),
                wrong_size: Vec::new(),
                etag_mismatch: vec![bad.part_number],
            });
        }
        if last.size > part_size {
            return Err(ApiError::PartMismatch {
                message: format!(
                    "the last part ({} bytes) is larger than the others",
                    last.size
                ),
                wrong_size: Vec::new(),
                etag_mismatch: vec![last.part_number],
            });
        }
        let learned =
            PartPlan::from_stored(total, part_size, parts.len() as u32).ok_or_else(|| {
                ApiError::InvalidRequest("parts: an empty upload cannot be completed".into())
            })?;
        if let Some(plan) = plan {
            if plan != learned {
                return Err(ApiError::PartMismatch {
                    message: format!(
                        "the parts add up to {total} bytes in {} parts; the upload declared {} bytes in {}",
                        parts.len(),
                        plan.size(),
                        plan.part_count()
                    ),
                    wrong_size: Vec::new(),
                    etag_mismatch: Vec::new(),
                });
            }
        }
        self.finish(upload, learned, &parts, plan.is_none().then_some(learned))
            .await
    }

    /// Completes at the provider with exactly `parts`, verifies the object's
    /// size, and records the completion.
    async fn finish(
        &self,
        upload: &Upload,
        plan: PartPlan,
        parts: &[StoredPart],
        learned: Option<PartPlan>,
    ) -> Result<Upload, ApiError> {
        let storage = &self.inner.storage;
        let total = plan.size();
        let mut object = match storage
            .complete_multipart_upload(
                &upload.key,
                &upload.provider_upload_id,
                parts,
                upload.checksum_algorithm,
            )
            .await
        {
            Ok(object) => object,
            Err(StorageError::NoSuchUpload) => return self.recover_gone(upload).await,
            Err(StorageError::Provider { code, .. })
                if matches!(
                    code.as_str(),
                    "InvalidPart"
                        | "InvalidPartOrder"
                        | "EntityTooSmall"
                        | "BadDigest"
                        | "InvalidRequest"
                ) =>
            {
                return Err(ApiError::PartMismatch {
                    message: format!(
                        "storage refused the part list ({code}); check the parts and try again"
                    ),
                    wrong_size: Vec::new(),
                    etag_mismatch: Vec::new(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        // Verify the object itself: its size must be the declared size.
        let head = storage.head_object(&upload.key).await;
        object.size = head.as_ref().ok().and_then(|h| h.as_ref().map(|h| h.size));
        let done = db::finish_completion_with_plan(
            &self.inner.db,
            upload.id,
            UploadStatus::Completing,
            &object,
            parts,
            Self::now(),
            learned,
        )
        .await?
        .ok_or_else(|| ApiError::Internal("the completion lease was lost".into()))?;
        match head {
            Ok(Some(h)) if h.size == total => {}
            Ok(found) => {
                tracing::error!(upload_id = %upload.id, size = ?found.map(|h| h.size), expected = total,
                    "the completed object does not have the declared size");
                return Err(ApiError::Storage(StorageError::Provider {
                    operation: "HeadObject",
                    code: "ObjectSizeMismatch".into(),
                    message: String::new(),
                }));
            }
            Err(e) => {
                tracing::warn!(upload_id = %upload.id, error = %e, "could not verify the completed object's size")
            }
        }
        tracing::info!(upload_id = %upload.id, parts = parts.len(), bytes = total, "upload completed");
        crate::metrics::upload_completed(total);
        Ok(done)
    }

    /// The provider has no such upload. If the object is there with the right
    /// size, an earlier completion got through before a crash: record it.
    /// Otherwise the upload is gone at the provider: it has expired.
    async fn recover_gone(&self, upload: &Upload) -> Result<Upload, ApiError> {
        if let Some(obj) = self.inner.storage.head_object(&upload.key).await? {
            if upload.plan.is_none_or(|p| obj.size == p.size()) {
                tracing::warn!(upload_id = %upload.id, "provider upload already completed; recording it");
                let object = FinishedObject {
                    etag: obj.etag,
                    checksum: None,
                    size: Some(obj.size),
                };
                return db::finish_completion(
                    &self.inner.db,
                    upload.id,
                    UploadStatus::Completing,
                    &object,
                    &[],
                    Self::now(),
                )
                .await?
                .ok_or_else(|| ApiError::Internal("the completion lease was lost".into()));
            }
        }
        self.storage_lost(upload).await?;
        Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
    }
    // ------------------------------------------------------------ companion

    /// Creates an upload without a declared size (the Companion-compatible
    /// API): its plan is learned from the parts at completion.
    pub async fn create_open(
        &self,
        tenant: &str,
        filename: FileName,
        content_type: ContentType,
        metadata: Metadata,
    ) -> Result<Upload, ApiError> {
        let this = self.clone();
        let tenant = tenant.to_string();
        spawn_to_end(async move {
            this.start_upload(
                tenant,
                &filename,
                &content_type,
                &metadata,
                None,
                None,
                None,
            )
            .await
        })
        .await
    }

    /// Every part storage holds for an active upload, as ListParts reports it.
    pub async fn list_stored_parts(
        &self,
        tenant: &str,
        r: &UploadRef,
    ) -> Result<Vec<StoredPart>, ApiError> {
        let upload = self.load_ref(tenant, r).await?;
        Self::require_active(&upload)?;
        match self
            .inner
            .storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(parts) => Ok(parts),
            Err(StorageError::NoSuchUpload) => {
                self.storage_lost(&upload).await?;
                Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A presigned POST for a whole small object (Companion's `/s3/params`,
    /// which Uppy uses for files it does not upload in parts). The key is
    /// chosen here like every other key; the policy pins it, the content type,
    /// the metadata and the largest size.
    pub async fn presign_post(
        &self,
        filename: &FileName,
        content_type: &ContentType,
        metadata: &Metadata,
    ) -> Result<(crate::storage::PresignedPost, u64), ApiError> {
        let s = &self.inner.settings;
        if !s.post_uploads {
            return Err(ApiError::InvalidRequest(
                "this storage provider does not take single-request (POST) uploads: configure @uppy/aws-s3 with shouldUseMultipart: true".into(),
            ));
        }
        let key = ObjectKey::for_upload(
            &s.key_prefix,
            Self::now(),
            Uuid::now_v7(),
            filename.as_str(),
        );
        // S3 takes at most 5 GiB in one request.
        let max = s
            .plan_limits
            .max_upload_size
            .min(crate::domain::part_plan::MAX_PART_SIZE);
        let post = self
            .inner
            .storage
            .presign_post_object(&key, content_type, metadata, max, s.part_url_ttl)
            .await?;
        crate::metrics::part_urls_signed(1);
        Ok((post, s.part_url_ttl.as_secs()))
    }

    /// Where a finished object lives (what S3 reports as `Location`).
    pub fn object_location(&self, upload: &Upload) -> String {
        self.inner.storage.object_url(&upload.key)
    }

    // ------------------------------------------------------------ download

    /// A short-lived presigned GET of a completed upload's object. Range
    /// requests and `If-Match` work on it (storage does the work).
    pub async fn download(
        &self,
        tenant: &str,
        token: &str,
        disposition: impl FnOnce(&Upload) -> Option<String>,
    ) -> Result<DownloadUrl, ApiError> {
        let upload = self.load(tenant, token).await?;
        let disposition = disposition(&upload);
        if upload.status != UploadStatus::Completed {
            return Err(ApiError::NotActive(upload.status));
        }
        let (start, seconds, expires_at) = self.url_validity(&upload, DOWNLOAD_URL_TTL)?;
        let url = self
            .inner
            .storage
            .presign_get_object(&upload.key, disposition, start, seconds)
            .await?;
        Ok(DownloadUrl {
            url,
            expires_at,
            etag: upload.etag.clone().unwrap_or_default(),
            size: upload
                .object_size
                .or(upload.plan.map(|p| p.size()))
                .unwrap_or(0),
        })
    }

    // ------------------------------------------------------------ abort

    /// Aborts the upload: the record first, then the provider (safe to repeat).
    pub async fn abort(&self, tenant: &str, upload: UploadRef) -> Result<(), ApiError> {
        let this = self.clone();
        let tenant = tenant.to_string();
        spawn_to_end(async move { this.abort_inner(&tenant, &upload).await }).await
    }

    async fn abort_inner(&self, tenant: &str, r: &UploadRef) -> Result<(), ApiError> {
        loop {
            let upload = self.load_ref(tenant, r).await?;
            match upload.status {
                UploadStatus::Completed | UploadStatus::Completing => {
                    return Err(ApiError::NotActive(upload.status))
                }
                UploadStatus::Expired | UploadStatus::Expiring => {
                    return Err(ApiError::Expired(EXPIRED_MESSAGE))
                }
                UploadStatus::Aborted => {
                    // Repeat the provider call: an earlier one may have failed.
                    self.inner
                        .storage
                        .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
                        .await?;
                    return Ok(());
                }
                UploadStatus::Active => {
                    let Some(aborted) = db::mark_aborted(&self.inner.db, upload.id).await? else {
                        continue;
                    };
                    let outcome = self
                        .inner
                        .storage
                        .abort_multipart_upload(&aborted.key, &aborted.provider_upload_id)
                        .await?;
                    tracing::info!(upload_id = %upload.id, ?outcome, "upload aborted");
                    crate::metrics::upload_aborted();
                    return Ok(());
                }
            }
        }
    }
}

/// 409 `PART_MISMATCH` if a stored part disagrees with what the client gave.
fn require_matching(stored: &[StoredPart], claims: &[PartClaim]) -> Result<(), ApiError> {
    let mismatched = conflicts(stored, claims);
    let Some(first) = mismatched.first() else {
        return Ok(());
    };
    let numbers: Vec<u32> = mismatched.iter().map(|c| c.part_number).collect();
    Err(ApiError::PartMismatch {
        message: format!(
            "part(s) {numbers:?} in storage do not match the given {}",
            first.field
        ),
        wrong_size: Vec::new(),
        etag_mismatch: numbers,
    })
}

/// The part `n` of an upload: within its plan, or 1 to 10,000 without one.
fn part_of(upload: &Upload, n: u32) -> Result<PartNumber, ApiError> {
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

/// Runs `fut` in its own task so it finishes even if the caller goes away.
async fn spawn_to_end<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(fut, span))
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u32, etag: &str, size: u64, checksum: Option<&str>) -> StoredPart {
        StoredPart {
            part_number: n,
            etag: format!("\"{etag}\""),
            size,
            checksum: checksum.map(str::to_string),
        }
    }

    #[test]
    fn conflicts_compare_etag_checksum_and_size() {
        let s = vec![
            stored(1, "a", 10, Some("c1")),
            stored(2, "b", 10, Some("c2")),
            stored(3, "c", 10, None),
        ];
        let claims = vec![
            PartClaim {
                part_number: 1,
                etag: Some("a".into()),
                checksum: Some("c1".into()),
                size: Some(10),
            },
            PartClaim {
                part_number: 2,
                checksum: Some("other".into()),
                ..Default::default()
            },
            PartClaim {
                part_number: 3,
                size: Some(11),
                ..Default::default()
            },
            PartClaim {
                part_number: 4,
                etag: Some("zzz".into()),
                ..Default::default()
            },
        ];
        let c = conflicts(&s, &claims);
        assert_eq!(
            c.iter()
                .map(|c| (c.part_number, c.field))
                .collect::<Vec<_>>(),
            vec![(2, "checksum"), (3, "size")]
        );
        let c = conflicts(
            &s,
            &[PartClaim {
                part_number: 1,
                etag: Some("\"x\"".into()),
                ..Default::default()
            }],
        );
        assert_eq!(c[0].field, "etag");
        assert_eq!((c[0].expected.as_str(), c[0].stored.as_str()), ("x", "a"));
    }
}
