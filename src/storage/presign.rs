//! Presigning: part uploads, downloads and POST policies. Local computation,
//! no provider call.

use super::*;

impl Storage {
    /// Presigns `UploadPart` for one part, valid from `start` for `expires_in`.
    ///
    /// Signed here with SigV4 (see `storage/sigv4.rs`): the same URL and
    /// headers as [`Storage::presign_upload_part_sdk`], byte for byte, at a small
    /// fraction of the cost. Whatever the fast signer cannot sign exactly (an
    /// endpoint it has not verified, no credentials, a time before 1970) goes
    /// through the SDK.
    pub async fn presign_upload_part(
        &self,
        part: &PartToSign<'_>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPart, StorageError> {
        if let Some(p) = self.presigner.presign(self, part, start, expires_in).await {
            return Ok(p);
        }
        self.presign_upload_part_sdk(part, start, expires_in).await
    }

    /// Presigns `UploadPart` with the SDK (a whole operation per URL, ~30 µs):
    /// the reference [`Storage::presign_upload_part`] is held to, and its fallback.
    pub async fn presign_upload_part_sdk(
        &self,
        part: &PartToSign<'_>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<PresignedPart, StorageError> {
        presign_upload_part_with(&self.client, &self.bucket, part, start, expires_in).await
    }

    /// Presigns GetObject for a finished object; `disposition` becomes the
    /// response's Content-Disposition.
    pub async fn presign_get_object(
        &self,
        key: &ObjectKey,
        disposition: Option<String>,
        start: SystemTime,
        expires_in: Duration,
    ) -> Result<String, StorageError> {
        let presigning = PresigningConfig::builder()
            .start_time(start)
            .expires_in(expires_in)
            .build()
            .map_err(|e| StorageError::Presign {
                operation: "GetObject",
                detail: e.to_string(),
            })?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_response_content_disposition(disposition)
            .presigned(presigning)
            .await
            .map_err(|e| StorageError::from_sdk("GetObject", e))?;
        Ok(req.uri().to_string())
    }

    /// Presigns a POST policy for one whole object at `key`: exactly that key,
    /// that content type and metadata, at most `max_size` bytes, until
    /// `expires_in` from now.
    pub async fn presign_post_object(
        &self,
        key: &ObjectKey,
        content_type: &ContentType,
        metadata: &Metadata,
        max_size: u64,
        expires_in: Duration,
    ) -> Result<PresignedPost, StorageError> {
        use aws_sdk_s3::config::ProvideCredentials;
        use base64::Engine as _;
        let presign_err = |detail: &str| StorageError::Presign {
            operation: "PostObject",
            detail: detail.to_string(),
        };
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| presign_err("no credentials provider"))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|_| presign_err("credentials could not be loaded"))?;
        let region = &self.region;
        let now = SystemTime::now();
        let t: chrono::DateTime<chrono::Utc> = now.into();
        let date = t.format("%Y%m%d").to_string();
        let amz_date = t.format("%Y%m%dT%H%M%SZ").to_string();
        let credential = format!("{}/{date}/{region}/s3/aws4_request", creds.access_key_id());
        let expiration = (t + chrono::Duration::from_std(expires_in)
            .unwrap_or(chrono::Duration::hours(1)))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();

        let mut fields = BTreeMap::new();
        fields.insert("key".to_string(), key.as_str().to_string());
        fields.insert(
            "Content-Type".to_string(),
            content_type.as_str().to_string(),
        );
        fields.insert(
            "x-amz-algorithm".to_string(),
            "AWS4-HMAC-SHA256".to_string(),
        );
        fields.insert("x-amz-credential".to_string(), credential);
        fields.insert("x-amz-date".to_string(), amz_date);
        if let Some(token) = creds.session_token() {
            fields.insert("x-amz-security-token".to_string(), token.to_string());
        }
        for (k, v) in metadata.iter() {
            fields.insert(format!("x-amz-meta-{k}"), v.clone());
        }
        let mut conditions = vec![
            serde_json::json!({ "bucket": self.bucket }),
            serde_json::json!(["content-length-range", 0, max_size]),
        ];
        conditions.extend(fields.iter().map(|(k, v)| serde_json::json!({ k: v })));
        let policy = serde_json::json!({ "expiration": expiration, "conditions": conditions });
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let signing_key =
            aws_sigv4::sign::v4::generate_signing_key(creds.secret_access_key(), now, region, "s3");
        let signature = aws_sigv4::sign::v4::calculate_signature(signing_key, policy.as_bytes());
        fields.insert("policy".to_string(), policy);
        fields.insert("x-amz-signature".to_string(), signature);
        Ok(PresignedPost {
            url: format!("{}/", self.object_base),
            fields,
        })
    }
}

/// Presigns `UploadPart` with this SDK client.
pub(super) async fn presign_upload_part_with(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    part: &PartToSign<'_>,
    start: SystemTime,
    expires_in: Duration,
) -> Result<PresignedPart, StorageError> {
    let PartToSign {
        key,
        upload_id,
        number: part,
        content_length,
        checksum,
    } = *part;
    let presigning = PresigningConfig::builder()
        .start_time(start)
        .expires_in(expires_in)
        .build()
        .map_err(|e| StorageError::Presign {
            operation: "UploadPart",
            detail: e.to_string(),
        })?;
    let mut req = client
        .upload_part()
        .bucket(bucket)
        .key(key.as_str())
        .upload_id(upload_id)
        .part_number(part.get() as i32)
        // The length is signed: storage refuses a PUT of any other length.
        .set_content_length(content_length.map(|n| n as i64));
    // The checksum header is signed: storage refuses the PUT without it, and
    // refuses bytes that do not match it (BadDigest).
    req = match checksum {
        Some((ChecksumAlgorithm::Sha256, c)) => req.checksum_sha256(c.as_str()),
        Some((ChecksumAlgorithm::Crc32c, c)) => req.checksum_crc32_c(c.as_str()),
        None => req,
    };
    let req = req
        .presigned(presigning)
        .await
        .map_err(|e| StorageError::from_sdk("UploadPart", e))?;
    let headers = req
        .headers()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    Ok(PresignedPart {
        url: req.uri().to_string(),
        headers,
    })
}
