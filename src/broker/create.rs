//! Creating uploads: the provider's multipart upload and its record, or neither.

use super::*;

impl Broker {
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
        self.run_to_end(async move { this.create_inner(tenant, req, plan).await })
            .await
    }

    pub(super) async fn create_inner(
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
                req.fingerprint.as_ref(),
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
    pub(super) async fn start_upload(
        &self,
        tenant: String,
        filename: &FileName,
        content_type: &ContentType,
        metadata: &Metadata,
        plan: Option<PartPlan>,
        fingerprint: Option<&Fingerprint>,
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
        let fingerprint_mac =
            fingerprint.map(|f| self.inner.tokens.fingerprint_mac(&tenant, f.as_str()));
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
            fingerprint_mac,
            origin: if plan.is_some() {
                Origin::Native
            } else {
                Origin::Companion
            },
            checksum_algorithm,
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
        if let Err(e) = db::insert_upload(&self.inner.db, &upload).await {
            self.abort_orphan(&upload).await;
            return Err(e.into());
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
        tenant: &str,
        filename: FileName,
        content_type: ContentType,
        metadata: Metadata,
    ) -> Result<Upload, ApiError> {
        let this = self.clone();
        let tenant = tenant.to_string();
        self.run_to_end(async move {
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
}
