//! Aborting an upload: the record first, then the provider.

use super::*;

impl Broker {
    // ------------------------------------------------------------ abort

    /// Aborts the upload: the record first, then the provider (safe to repeat).
    pub async fn abort(&self, tenant: &str, upload: UploadRef) -> Result<(), ApiError> {
        let this = self.clone();
        let tenant = tenant.to_string();
        spawn_to_end(async move { this.abort_inner(&tenant, &upload).await }).await
    }

    pub(super) async fn abort_inner(&self, tenant: &str, r: &UploadRef) -> Result<(), ApiError> {
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
