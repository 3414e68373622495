//! Creating uploads: the provider's multipart upload and its record, or neither.

use super::*;
use crate::domain::event::NewEvent;

impl Broker {
    // ------------------------------------------------------------ create

    /// Creates the provider upload, records it, and signs the first parts
    /// (none for checksum-bound uploads: those are signed with their checksums).
    /// A grant's limits are checked first, its quotas with the record.
    pub async fn create(
        &self,
        access: &Access,
        req: NewUpload,
    ) -> Result<(Upload, Vec<SignedPart>), ApiError> {
        let plan = PartPlan::new(req.size, req.part_size, self.inner.settings.plan_limits)?;
        if let Some(a) = req.checksum_algorithm {
            self.inner
                .settings
                .provider
                .admit_checksum(a)
                .map_err(ApiError::InvalidRequest)?;
        }
        let metadata = access.admit(Some(req.size), &req.content_type, req.metadata.clone())?;
        self.part_url_ttl(req.url_ttl_seconds)?;
        let this = self.clone();
        let access = access.clone();
        self.run_to_end(async move { this.create_inner(&access, req, metadata, plan).await })
            .await
    }

    pub(super) async fn create_inner(
        &self,
        access: &Access,
        req: NewUpload,
        metadata: Metadata,
        plan: PartPlan,
    ) -> Result<(Upload, Vec<SignedPart>), ApiError> {
        let s = &self.inner.settings;
        let ttl = self.part_url_ttl(req.url_ttl_seconds)?;
        let upload = self
            .start_upload(
                access,
                Start {
                    filename: &req.filename,
                    content_type: &req.content_type,
                    metadata: &metadata,
                    plan: Some(plan),
                    fingerprint: req.fingerprint.as_ref(),
                    checksum_algorithm: req.checksum_algorithm,
                },
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
        match self.sign_parts(&upload, &first, ttl).await {
            Ok(parts) => Ok((upload, parts)),
            Err(e) => {
                // Without its token the client can never use it: take it back.
                let _ = db::delete_upload(&self.inner.db, upload.id).await;
                self.abort_orphan(&upload).await;
                Err(e)
            }
        }
    }

    /// Creates the provider upload and records it within the quotas; if the
    /// record cannot be written (or a quota is full), the provider upload is
    /// aborted (no orphan on any error path).
    pub(super) async fn start_upload(
        &self,
        access: &Access,
        start: Start<'_>,
    ) -> Result<Upload, ApiError> {
        let s = &self.inner.settings;
        let now = Self::now().trunc_subsecs(0);
        let id = Uuid::now_v7();
        let key = ObjectKey::for_upload(&s.key_prefix, now, id, start.filename.as_str());
        let storage = &self.inner.storage;
        let provider_upload_id = storage
            .create_multipart_upload(
                &key,
                start.content_type,
                start.metadata,
                start.checksum_algorithm,
            )
            .await?;
        let plan = start.plan;
        let upload = Upload {
            id,
            tenant: access.tenant.clone(),
            subject: access.subject().map(str::to_string),
            status: UploadStatus::Active,
            bucket: storage.bucket().to_string(),
            key,
            provider_upload_id,
            filename: start.filename.clone(),
            content_type: start.content_type.clone(),
            plan,
            metadata: start.metadata.as_map().clone(),
            fingerprint_mac: start.fingerprint.map(|f| {
                self.inner
                    .tokens
                    .fingerprint_mac(&access.tenant, f.as_str())
            }),
            origin: if plan.is_some() {
                Origin::Native
            } else {
                Origin::Companion
            },
            size_limit: access.grant.as_ref().and_then(|g| g.limits.max_upload_size),
            checksum_algorithm: start.checksum_algorithm,
            etag: None,
            checksum: None,
            object_size: None,
            completed_parts: None,
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(s.upload_ttl).unwrap_or(chrono::Duration::days(7)),
            lease_until: None,
            claim: None,
        };
        let grant = access.grant.as_ref().and_then(|g| {
            g.limits.max_uploads.map(|max| db::GrantUse {
                id: &g.id,
                max_uploads: max,
                expires_at: g.expires_at,
            })
        });
        let created = NewEvent::of(&upload, now).expect("an active upload's event");
        match db::insert_within_quotas(&self.inner.db, &upload, &s.quotas, grant, &created).await {
            Ok(Ok(())) => crate::events::wake(),
            Ok(Err(hit)) => {
                self.abort_orphan(&upload).await;
                return Err(ApiError::QuotaExceeded {
                    quota: hit.quota,
                    limit: hit.limit,
                    current: hit.current,
                });
            }
            Err(e) => {
                self.abort_orphan(&upload).await;
                return Err(e.into());
            }
        }
        tracing::info!(upload_id = %upload.id, size = ?plan.map(|p| p.size()), parts = ?plan.map(|p| p.part_count()), "upload created");
        crate::metrics::upload_created();
        Ok(upload)
    }

    pub(super) async fn abort_orphan(&self, upload: &Upload) {
        if let Err(e) = self
            .inner
            .storage
            .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
            .await
        {
            tracing::error!(upload_id = %upload.id, error = %e, "could not abort a provider upload after a failed create");
        }
    }

    // ------------------------------------------------------------ companion

    /// Creates an upload without a declared size (the Companion-compatible
    /// API): its plan is learned from the parts at completion.
    pub async fn create_open(
        &self,
        access: &Access,
        filename: FileName,
        content_type: ContentType,
        metadata: Metadata,
    ) -> Result<Upload, ApiError> {
        let metadata = access.admit(None, &content_type, metadata)?;
        let this = self.clone();
        let access = access.clone();
        self.run_to_end(async move {
            this.start_upload(
                &access,
                Start {
                    filename: &filename,
                    content_type: &content_type,
                    metadata: &metadata,
                    plan: None,
                    fingerprint: None,
                    checksum_algorithm: None,
                },
            )
            .await
        })
        .await
    }
}

/// What an upload is started with.
pub(super) struct Start<'a> {
    pub filename: &'a FileName,
    pub content_type: &'a ContentType,
    /// As admitted: the grant's forced keys already merged in.
    pub metadata: &'a Metadata,
    pub plan: Option<PartPlan>,
    pub fingerprint: Option<&'a Fingerprint>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
}
