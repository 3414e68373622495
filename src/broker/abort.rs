//! Aborting an upload: the claim first, then the provider, then the record.

use super::*;
use crate::domain::transitions::OnAbort;

impl Broker {
    // ------------------------------------------------------------ abort

    /// Aborts the upload: the record first, then the provider (safe to repeat).
    pub async fn abort(&self, access: &Access, upload: UploadRef) -> Result<(), ApiError> {
        let this = self.clone();
        let access = access.clone();
        self.run_to_end(async move { this.abort_inner(&access, &upload).await })
            .await
    }

    pub(super) async fn abort_inner(&self, access: &Access, r: &UploadRef) -> Result<(), ApiError> {
        let mut first = true;
        loop {
            let upload = if std::mem::take(&mut first) {
                self.load_ref(access, r).await?
            } else {
                self.load_ref_again(access, r).await?
            };
            match upload.on_abort() {
                OnAbort::Refuse(r) => return Err(r.into()),
                OnAbort::Repeat => {
                    // Repeat the provider call: an earlier one may have failed.
                    self.inner
                        .storage
                        .abort_multipart_upload(&upload.key, &upload.provider_upload_id)
                        .await?;
                    return Ok(());
                }
                OnAbort::Claim => {
                    // Claim first (`aborting`, with a lease), then the provider,
                    // then `aborted`: if the provider call fails, the row says
                    // so, a retry or the sweep finishes it, and no provider
                    // upload is left behind a row that says `aborted`.
                    let lease = self.inner.settings.completion_lease;
                    let Some(mine) =
                        db::claim_abort(&self.inner.db, upload.id, Self::now(), lease).await?
                    else {
                        continue;
                    };
                    self.inner.cache.forget(mine.id);
                    let outcome = self
                        .holding(
                            &mine,
                            self.inner
                                .storage
                                .abort_multipart_upload(&mine.key, &mine.provider_upload_id),
                        )
                        .await?;
                    tracing::debug!(upload_id = %mine.id, ?outcome, "provider upload aborted");
                    // None: a concurrent DELETE took the claim over and records it.
                    record::aborted(&self.inner.db, &mine, Fence::of(&mine)).await?;
                    return Ok(());
                }
            }
        }
    }
}
