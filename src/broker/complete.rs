//! Completion, exactly once: a fenced claim, the provider's part list, the
//! provider call, the record.

use super::*;
use crate::domain::transitions::OnComplete;

impl Broker {
    // ------------------------------------------------------------ complete

    /// Completes the upload exactly once, however many callers ask at once.
    pub async fn complete(
        &self,
        access: &Access,
        upload: UploadRef,
        with: CompleteWith,
    ) -> Result<Upload, ApiError> {
        let this = self.clone();
        let access = access.clone();
        self.run_to_end(async move { this.complete_inner(&access, &upload, &with).await })
            .await
    }

    pub(super) async fn complete_inner(
        &self,
        access: &Access,
        r: &UploadRef,
        with: &CompleteWith,
    ) -> Result<Upload, ApiError> {
        let lease = self.inner.settings.completion_lease;
        let deadline = tokio::time::Instant::now() + lease + Duration::from_secs(5);
        let mut pause = Duration::from_millis(25);
        let claims = match with {
            CompleteWith::Listed(c) => c.as_deref().unwrap_or_default(),
            CompleteWith::Given(c) => c.as_slice(),
        };
        let mut first = true;
        loop {
            let upload = if std::mem::take(&mut first) {
                self.load_ref(access, r).await?
            } else {
                self.load_ref_again(access, r).await?
            };
            match upload.on_complete(Self::now()) {
                OnComplete::Done => return Ok(upload),
                OnComplete::Refuse(r) => return Err(r.into()),
                OnComplete::Wait => {
                    // Someone else is completing it: wait for their outcome,
                    // looking less often the longer it takes.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ApiError::Overloaded(
                            "a completion of this upload is still in progress; try again shortly",
                        ));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                OnComplete::Claim => {}
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
            self.inner.cache.forget(mine.id);
            let claim = mine.claim.expect("a claimed upload has a claim id");
            let work = async {
                match (mine.plan, with) {
                    (Some(plan), CompleteWith::Listed(claimed)) => {
                        self.complete_claimed(&mine, plan, claimed.as_deref()).await
                    }
                    (plan, CompleteWith::Given(given)) => {
                        self.complete_given(&mine, plan, given).await
                    }
                    (None, CompleteWith::Listed(_)) => Err(ApiError::Internal(
                        "a native completion of an upload without a plan".into(),
                    )),
                }
            };
            let result = self.holding(&mine, work).await;
            if let Err(e) = &result {
                // Completable again, unless it was settled (completed or
                // expired) meanwhile: the release is fenced by our claim.
                tracing::debug!(upload_id = %mine.id, error = %e, "completion failed; releasing the claim");
                db::release_completion(&self.inner.db, mine.id, claim).await?;
            }
            return result;
        }
    }

    pub(super) async fn complete_claimed(
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
    pub(super) async fn complete_given(
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
        let (parts, learned) = crate::domain::parts::given_parts(&stored, given)?;
        let max = self
            .inner
            .settings
            .plan_limits
            .max_upload_size
            .min(upload.size_limit.unwrap_or(u64::MAX));
        if learned.size() > max {
            // Refused before the provider call: the upload stays active, so the
            // client can abort it (or the sweep will).
            return Err(ApiError::TooLarge(format!(
                "the parts add up to {} bytes, over the maximum upload size of {max} bytes; abort the upload",
                learned.size()
            )));
        }
        if let Some(plan) = plan {
            if plan != learned {
                return Err(ApiError::PartMismatch {
                    message: format!(
                        "the parts add up to {} bytes in {} parts; the upload declared {} bytes in {}",
                        learned.size(),
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
    /// size, and records the completion. An object of another size is not a
    /// completion: it is deleted and the upload expired (nothing usable is left
    /// at the provider), and the caller is told so with a 502.
    pub(super) async fn finish(
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
        // Verify the object itself before recording anything. If HeadObject
        // fails, the claim is released: the next call (or the sweep) finds the
        // provider upload gone and the object there, and records it then.
        let found = storage.head_object(&upload.key).await?;
        match found {
            Some(h) if h.size == total => object.size = Some(h.size),
            found => {
                let size = found.as_ref().map(|h| h.size);
                record::unusable(
                    &self.inner.db,
                    &self.inner.storage,
                    upload,
                    Fence::of(upload),
                    found.as_ref(),
                )
                .await?;
                return Err(ApiError::BadObject(format!(
                    "the object storage made has {} bytes, not {total}; it was removed and the upload has expired: upload the file again",
                    size.map_or("no".to_string(), |n| n.to_string())
                )));
            }
        }
        match record::completed(
            &self.inner.db,
            upload,
            Fence::of(upload),
            &object,
            parts,
            learned,
            record::CompletedBy::Complete,
        )
        .await?
        {
            Some(done) => Ok(done),
            // Our claim was taken over while we worked (its lease ran out): the
            // object is there, and whoever holds the upload now will find the
            // provider upload gone and record it. The caller may ask again.
            None => Err(ApiError::Overloaded(
                "the completion went through but is being recorded by another caller; call complete again",
            )),
        }
    }

    /// The provider has no such upload: settle it once (an earlier completion
    /// that got through is recorded; otherwise it has expired).
    pub(super) async fn recover_gone(&self, upload: &Upload) -> Result<Upload, ApiError> {
        match record::settle_gone(
            &self.inner.db,
            &self.inner.storage,
            upload,
            Fence::of(upload),
            record::CompletedBy::Recovery,
        )
        .await?
        {
            record::Settled::Completed(done) => Ok(*done),
            record::Settled::Expired => Err(ApiError::Expired(GONE_AT_PROVIDER_MESSAGE)),
            record::Settled::Moved => Err(ApiError::Overloaded(
                "the upload changed while it was being completed; call complete again",
            )),
        }
    }
}
