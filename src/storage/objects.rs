//! Whole objects: the bucket check (readiness), HeadObject and DeleteObject.

use super::*;

impl Storage {
    /// Whether the bucket is reachable with these credentials (readiness).
    pub async fn check_bucket(&self) -> Result<(), StorageError> {
        let call = self.client.head_bucket().bucket(&self.bucket).send();
        observed("HeadBucket", async {
            call.await
                .map(|_| ())
                .map_err(|e| StorageError::from_sdk("HeadBucket", e))
        })
        .await
    }

    /// The finished object at `key`, if there is one.
    #[tracing::instrument(name = "storage.head_object", skip_all, fields(key = key.as_str()))]
    pub async fn head_object(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>, StorageError> {
        let call = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send();
        observed("HeadObject", async {
            match call.await {
                Ok(out) => Ok(Some(ObjectInfo {
                    size: u64::try_from(out.content_length.unwrap_or(0)).unwrap_or(0),
                    etag: out.e_tag.unwrap_or_default(),
                })),
                Err(SdkError::ServiceError(se)) if se.err().is_not_found() => Ok(None),
                Err(e) => Err(StorageError::from_sdk("HeadObject", e)),
            }
        })
        .await
    }

    /// Deletes an object (only one the broker itself could not account for).
    #[tracing::instrument(name = "storage.delete_object", skip_all, fields(key = key.as_str()))]
    pub async fn delete_object(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let call = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send();
        observed("DeleteObject", async {
            call.await
                .map(|_| ())
                .map_err(|e| StorageError::from_sdk("DeleteObject", e))
        })
        .await
    }
}
