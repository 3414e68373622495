//! Status, resume and fingerprint lookup: the record held against the provider's part list.

use super::*;
use crate::domain::transitions::OnGone;

impl Broker {
    // ------------------------------------------------------------ status and resume

    /// The upload with what the provider holds of it.
    pub async fn status(
        &self,
        access: &Access,
        upload: &UploadRef,
    ) -> Result<UploadState, ApiError> {
        let upload = self.load_ref(access, upload).await?;
        self.state_of(upload).await
    }

    pub(super) async fn state_of(&self, upload: Upload) -> Result<UploadState, ApiError> {
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
            UploadStatus::Aborting
            | UploadStatus::Aborted
            | UploadStatus::Expired
            | UploadStatus::Expiring => Ok(Self::reconciled(upload, &[])),
        }
    }
    /// ListParts said NoSuchUpload: someone completed or aborted the upload a
    /// moment ago, or the provider lost it. Answer from the fresh record; an
    /// upload nobody holds (or whose holder's lease ran out) is settled once:
    /// recorded completed if its object is there, expired if not.
    pub(super) async fn after_no_such_upload(&self, id: Uuid) -> Result<UploadState, ApiError> {
        // A completion may be between its provider call and its record: give it
        // a moment to land.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut pause = Duration::from_millis(25);
        loop {
            let fresh = db::get_upload(&self.inner.db, id)
                .await?
                .ok_or(ApiError::NotFound)?;
            self.inner.cache.saw(&fresh);
            match fresh.on_gone(Self::now()) {
                OnGone::Answer if fresh.status == UploadStatus::Completed => {
                    return Ok(Self::finished(fresh))
                }
                OnGone::Answer => return Ok(Self::reconciled(fresh, &[])),
                OnGone::Wait if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                OnGone::Wait => return Ok(Self::reconciled(fresh, &[])),
                OnGone::Settle => {
                    // Completed or expired in a moment, whichever it is.
                    self.inner.cache.forget(id);
                    match record::settle_gone(
                        &self.inner.db,
                        &self.inner.storage,
                        &fresh,
                        Fence::of(&fresh),
                        record::CompletedBy::Recovery,
                    )
                    .await?
                    {
                        record::Settled::Completed(done) => return Ok(Self::finished(*done)),
                        record::Settled::Expired => {
                            return Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
                        }
                        record::Settled::Moved => continue,
                    }
                }
                OnGone::Refuse(_) => return Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE)),
            }
        }
    }

    pub(super) fn reconciled(upload: Upload, stored: &[StoredPart]) -> UploadState {
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

    pub(super) fn finished(upload: Upload) -> UploadState {
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

    /// Reconciles with the provider and signs the first missing parts. Parts
    /// whose stored ETag, checksum or size disagree with the client's `claims`
    /// are reported as conflicting and treated as missing, so the client
    /// re-sends them. Checksum-bound uploads get no URLs here (the client signs
    /// the missing parts with their checksums through `…/parts`).
    pub async fn resume(
        &self,
        access: &Access,
        token: &str,
        claims: &[PartClaim],
    ) -> Result<(UploadState, Vec<SignedPart>), ApiError> {
        let upload = self.load(access, token).await?;
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
        let parts = self
            .sign_parts(&state.upload, &window, self.inner.settings.part_url_ttl)
            .await?;
        Ok((state, parts))
    }

    /// A tenant's active uploads created with `fingerprint`, newest first, each
    /// reconciled with the provider (uploads it no longer has are left out).
    pub async fn find_by_fingerprint(
        &self,
        access: &Access,
        fingerprint: &Fingerprint,
    ) -> Result<Vec<UploadState>, ApiError> {
        let found = db::find_by_fingerprint(
            &self.inner.db,
            &access.tenant,
            access.subject(),
            &self
                .inner
                .tokens
                .fingerprint_mac(&access.tenant, fingerprint.as_str()),
            Self::now(),
            FINGERPRINT_LOOKUP_LIMIT,
        )
        .await?;
        // Each is reconciled with ListParts, a few at a time (one lookup must
        // not fan out into 20 provider calls at once).
        let mut tasks = tokio::task::JoinSet::new();
        let mut states = Vec::new();
        let mut keep =
            |joined: Option<Result<(usize, Result<UploadState, ApiError>), _>>| match joined {
                None => Ok(()),
                Some(j) => match j.map_err(|e| ApiError::Internal(format!("task failed: {e}")))? {
                    (i, Ok(state)) if state.upload.status == UploadStatus::Active => {
                        states.push((i, state));
                        Ok(())
                    }
                    (_, Ok(_)) | (_, Err(ApiError::Expired(_))) => Ok(()),
                    (_, Err(e)) => Err(e),
                },
            };
        for (i, upload) in found.into_iter().enumerate() {
            if tasks.len() >= FINGERPRINT_LOOKUP_CONCURRENCY {
                keep(tasks.join_next().await)?;
            }
            let this = self.clone();
            tasks.spawn(tracing::Instrument::in_current_span(async move {
                (i, this.state_of(upload).await)
            }));
        }
        while !tasks.is_empty() {
            keep(tasks.join_next().await)?;
        }
        states.sort_by_key(|(i, _)| *i);
        Ok(states.into_iter().map(|(_, s)| s).collect())
    }

    /// A page of the caller's active uploads (a grant: its subject's), newest
    /// first, from the database alone (no ListParts: progress is per upload).
    pub async fn list_active(
        &self,
        access: &Access,
        before: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
        limit: i64,
    ) -> Result<Vec<Upload>, ApiError> {
        Ok(db::list_active(
            &self.inner.db,
            &access.tenant,
            access.subject(),
            before,
            Self::now(),
            limit,
        )
        .await?)
    }

    /// Every part storage holds for an active upload, as ListParts reports it.
    pub async fn list_stored_parts(
        &self,
        access: &Access,
        r: &UploadRef,
    ) -> Result<Vec<StoredPart>, ApiError> {
        let upload = self.load_ref(access, r).await?;
        Self::require_active(&upload)?;
        match self
            .inner
            .storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(parts) => Ok(parts),
            Err(StorageError::NoSuchUpload) => {
                let state = self.after_no_such_upload(upload.id).await?;
                Self::require_active(&state.upload)?;
                Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE))
            }
            Err(e) => Err(e.into()),
        }
    }
}
