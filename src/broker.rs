//! The upload operations, shared by every HTTP front-end: load the record, ask
//! the domain, call storage, persist. Mutating operations run to the end in a
//! task of their own, so a client that hangs up mid-request cannot leave a
//! provider upload without its record or an upload stuck in `completing`.

use crate::db;
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
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub filename: FileName,
    pub size: u64,
    pub part_size: Option<u64>,
    pub content_type: ContentType,
    pub metadata: Metadata,
    pub fingerprint: Option<Fingerprint>,
}

/// A presigned part URL as clients see it.
#[derive(Debug, Clone)]
pub struct SignedPart {
    pub part_number: PartNumber,
    pub url: String,
    pub size: u64,
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
}

/// A part the client says it uploaded, for `complete`.
#[derive(Debug, Clone)]
pub struct ClaimedPart {
    pub part_number: u32,
    pub etag: String,
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

    /// Creates the provider upload, records it, and signs the first parts.
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
        let now = Self::now().trunc_subsecs(3);
        let id = Uuid::now_v7();
        let key = ObjectKey::for_upload(&s.key_prefix, now, id, req.filename.as_str());
        let storage = &self.inner.storage;
        let provider_upload_id = storage
            .create_multipart_upload(&key, &req.content_type, &req.metadata)
            .await?;
        let upload = Upload {
            id,
            tenant,
            status: UploadStatus::Active,
            bucket: storage.bucket().to_string(),
            key,
            provider_upload_id,
            filename: req.filename.as_str().to_string(),
            content_type: req.content_type.as_str().to_string(),
            plan,
            metadata: req.metadata.as_map().clone(),
            fingerprint: req.fingerprint.map(|f| f.as_str().to_string()),
            etag: None,
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
        tracing::info!(upload_id = %upload.id, parts = plan.part_count(), size = plan.size(), "upload created");
        let first: Vec<PartNumber> = plan.parts().take(s.sign_window as usize).collect();
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

    /// The upload a token names, if it is the tenant's. Expired uploads answer 410.
    pub async fn load(&self, tenant: &str, token: &str) -> Result<Upload, ApiError> {
        let id = self.inner.tokens.verify(token).ok_or(ApiError::NotFound)?;
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let upload = db::get_upload(&self.inner.db, id)
            .await?
            .filter(|u| u.tenant == tenant)
            .ok_or(ApiError::NotFound)?;
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

    /// Presigns `UploadPart` for the given parts of an active upload.
    pub async fn sign(
        &self,
        tenant: &str,
        token: &str,
        numbers: &[u32],
    ) -> Result<Vec<SignedPart>, ApiError> {
        let upload = self.load(tenant, token).await?;
        Self::require_active(&upload)?;
        let parts = numbers
            .iter()
            .map(|&n| {
                upload.plan.part(n).ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "partNumbers: {n} is out of range; this upload has parts 1 to {}",
                        upload.plan.part_count()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.sign_parts(&upload, &parts).await
    }

    async fn sign_parts(
        &self,
        upload: &Upload,
        parts: &[PartNumber],
    ) -> Result<Vec<SignedPart>, ApiError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        // Whole seconds, so that the URL's own expiry equals `expiresAt` exactly,
        // and never past the upload's expiry.
        let start = Self::now().trunc_subsecs(0);
        let ttl = chrono::Duration::from_std(self.inner.settings.part_url_ttl)
            .unwrap_or(chrono::Duration::hours(1));
        let until_upload_expiry = (upload.expires_at - start).num_seconds();
        let seconds = ttl.num_seconds().min(until_upload_expiry);
        if seconds < 1 {
            return Err(ApiError::Expired(EXPIRED_MESSAGE));
        }
        let expires_at = start + chrono::Duration::seconds(seconds);
        let start_sys = UNIX_EPOCH + Duration::from_secs(start.timestamp() as u64);
        let mut out = Vec::with_capacity(parts.len());
        for &n in parts {
            let p = self
                .inner
                .storage
                .presign_upload_part(
                    &upload.key,
                    &upload.provider_upload_id,
                    n,
                    start_sys,
                    Duration::from_secs(seconds as u64),
                )
                .await?;
            out.push(SignedPart {
                part_number: n,
                url: p.url,
                size: upload.plan.part_len(n),
                expires_at,
                headers: p.headers,
            });
        }
        Ok(out)
    }

    /// The upload with what the provider holds of it.
    pub async fn status(&self, tenant: &str, token: &str) -> Result<UploadState, ApiError> {
        let upload = self.load(tenant, token).await?;
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
                    Err(StorageError::NoSuchUpload) => {
                        // Completed a moment ago, or gone behind our back.
                        let fresh = db::get_upload(&self.inner.db, upload.id)
                            .await?
                            .ok_or(ApiError::NotFound)?;
                        if fresh.status == UploadStatus::Completed {
                            return Ok(Self::finished(fresh));
                        }
                        if fresh.status == UploadStatus::Active {
                            self.storage_lost(&fresh).await?;
                        }
                        Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            UploadStatus::Completed => Ok(Self::finished(upload)),
            UploadStatus::Aborted | UploadStatus::Expired | UploadStatus::Expiring => {
                Ok(Self::reconciled(upload, &[]))
            }
        }
    }

    fn reconciled(upload: Upload, stored: &[StoredPart]) -> UploadState {
        let r = Reconciliation::new(&upload.plan, stored);
        if !r.wrong_size.is_empty() {
            tracing::warn!(upload_id = %upload.id, parts = ?r.wrong_size, "stored parts with a size that does not fit the plan");
        }
        UploadState {
            progress: r.progress(&upload.plan),
            uploaded: r.uploaded,
            missing: r.missing,
            upload,
        }
    }

    fn finished(upload: Upload) -> UploadState {
        let uploaded = upload.completed_parts.clone().unwrap_or_default();
        let plan = upload.plan;
        UploadState {
            progress: Progress::new(
                plan.size(),
                plan.size(),
                plan.part_count(),
                plan.part_count(),
            ),
            uploaded,
            missing: Vec::new(),
            upload,
        }
    }

    /// The provider no longer has an upload we think is active: record it as
    /// expired (the client is told 410, never a 502 or a stuck row).
    async fn storage_lost(&self, upload: &Upload) -> Result<(), ApiError> {
        tracing::warn!(upload_id = %upload.id, "the storage provider no longer has this upload; marking it expired");
        db::mark_expired(&self.inner.db, upload.id, upload.status).await?;
        Ok(())
    }

    /// Reconciles with the provider and signs the first missing parts.
    pub async fn resume(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<(UploadState, Vec<SignedPart>), ApiError> {
        let upload = self.load(tenant, token).await?;
        Self::require_active(&upload)?;
        let state = self.state_of(upload).await?;
        Self::require_active(&state.upload)?;
        let window: Vec<PartNumber> = state
            .missing
            .iter()
            .copied()
            .take(self.inner.settings.sign_window as usize)
            .collect();
        let parts = self.sign_parts(&state.upload, &window).await?;
        Ok((state, parts))
    }

    /// Completes the upload exactly once, however many callers ask at once.
    pub async fn complete(
        &self,
        tenant: &str,
        token: &str,
        claimed: Option<Vec<ClaimedPart>>,
    ) -> Result<Upload, ApiError> {
        let this = self.clone();
        let (tenant, token) = (tenant.to_string(), token.to_string());
        spawn_to_end(async move {
            this.complete_inner(&tenant, &token, claimed.as_deref())
                .await
        })
        .await
    }

    async fn complete_inner(
        &self,
        tenant: &str,
        token: &str,
        claimed: Option<&[ClaimedPart]>,
    ) -> Result<Upload, ApiError> {
        let lease = self.inner.settings.completion_lease;
        let deadline = tokio::time::Instant::now() + lease + Duration::from_secs(5);
        loop {
            let upload = self.load(tenant, token).await?;
            if let Some(claimed) = claimed {
                for p in claimed {
                    if upload.plan.part(p.part_number).is_none() {
                        return Err(ApiError::InvalidRequest(format!(
                            "parts: part {} is out of range; this upload has parts 1 to {}",
                            p.part_number,
                            upload.plan.part_count()
                        )));
                    }
                }
            }
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
            let Some(mine) =
                db::claim_completion(&self.inner.db, upload.id, Self::now(), lease).await?
            else {
                continue; // someone else moved it first; look again
            };
            let result = self.complete_claimed(&mine, claimed).await;
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
        claimed: Option<&[ClaimedPart]>,
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
        let r = Reconciliation::new(&upload.plan, &stored);
        if let Some(claimed) = claimed {
            let by_number: BTreeMap<u32, &StoredPart> =
                stored.iter().map(|p| (p.part_number, p)).collect();
            let mut absent = Vec::new();
            let mut mismatched = Vec::new();
            for c in claimed {
                match by_number.get(&c.part_number) {
                    None => absent.push(c.part_number),
                    Some(s) if bare_etag(&s.etag) != bare_etag(&c.etag) => {
                        mismatched.push(c.part_number)
                    }
                    Some(_) => {}
                }
            }
            if !mismatched.is_empty() {
                mismatched.sort_unstable();
                mismatched.dedup();
                return Err(ApiError::PartMismatch {
                    message: format!(
                        "the ETag of part(s) {mismatched:?} does not match what storage holds"
                    ),
                    wrong_size: Vec::new(),
                    etag_mismatch: mismatched,
                });
            }
            if !absent.is_empty() && r.missing.is_empty() {
                // Cannot happen: every claimed part is in range and all are present.
                return Err(ApiError::Internal(
                    "claimed part absent from a complete upload".into(),
                ));
            }
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
        let total: u64 = r.uploaded.iter().map(|p| p.size).sum();
        if total != upload.plan.size() {
            return Err(ApiError::Internal(format!(
                "parts add up to {total}, not {}",
                upload.plan.size()
            )));
        }
        match storage
            .complete_multipart_upload(&upload.key, &upload.provider_upload_id, &r.uploaded)
            .await
        {
            Ok(etag) => {
                let done = db::finish_completion(
                    &self.inner.db,
                    upload.id,
                    UploadStatus::Completing,
                    &etag,
                    &r.uploaded,
                    Self::now(),
                )
                .await?
                .ok_or_else(|| ApiError::Internal("the completion lease was lost".into()))?;
                tracing::info!(upload_id = %upload.id, parts = r.uploaded.len(), bytes = total, "upload completed");
                Ok(done)
            }
            Err(StorageError::NoSuchUpload) => self.recover_gone(upload).await,
            Err(StorageError::Provider { code, .. })
                if matches!(
                    code.as_str(),
                    "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall"
                ) =>
            {
                Err(ApiError::PartMismatch {
                    message: format!(
                        "storage refused the part list ({code}); check the parts and try again"
                    ),
                    wrong_size: Vec::new(),
                    etag_mismatch: Vec::new(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The provider has no such upload. If the object is there with the right
    /// size, an earlier completion got through before a crash: record it.
    /// Otherwise the upload is gone at the provider: it has expired.
    async fn recover_gone(&self, upload: &Upload) -> Result<Upload, ApiError> {
        if let Some(obj) = self.inner.storage.head_object(&upload.key).await? {
            if obj.size == upload.plan.size() {
                tracing::warn!(upload_id = %upload.id, "provider upload already completed; recording it");
                let parts = Vec::new();
                return db::finish_completion(
                    &self.inner.db,
                    upload.id,
                    UploadStatus::Completing,
                    &obj.etag,
                    &parts,
                    Self::now(),
                )
                .await?
                .ok_or_else(|| ApiError::Internal("the completion lease was lost".into()));
            }
        }
        self.storage_lost(upload).await?;
        Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
    }

    /// Aborts the upload: the record first, then the provider (safe to repeat).
    pub async fn abort(&self, tenant: &str, token: &str) -> Result<(), ApiError> {
        let this = self.clone();
        let (tenant, token) = (tenant.to_string(), token.to_string());
        spawn_to_end(async move { this.abort_inner(&tenant, &token).await }).await
    }

    async fn abort_inner(&self, tenant: &str, token: &str) -> Result<(), ApiError> {
        loop {
            let upload = self.load(tenant, token).await?;
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
                    return Ok(());
                }
            }
        }
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
