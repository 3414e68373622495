//! Presigned URLs: part uploads, POST policies and downloads.

use super::*;
use crate::storage::PartToSign;

impl Broker {
    // ------------------------------------------------------------ sign

    /// Presigns `UploadPart` for the given parts of an active upload.
    /// `url_ttl_seconds`: the URLs' life asked for (`PART_URL_TTL` without it).
    pub async fn sign(
        &self,
        access: &Access,
        upload: &UploadRef,
        requests: &[PartRequest],
        url_ttl_seconds: Option<u64>,
    ) -> Result<Vec<SignedPart>, ApiError> {
        let ttl = self.part_url_ttl(url_ttl_seconds)?;
        let upload = self.load_for_signing(access, upload).await?;
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
        self.within_size_limit(&upload, &parts).await?;
        self.sign_parts(&upload, &parts, ttl).await
    }

    /// An upload without a declared size (Companion's) created with a grant's
    /// `maxUploadSize` gets no more part URLs once the parts it holds reach
    /// that size (413): it cannot grow past it by more than the parts in
    /// flight, and its completion checks the object's size again.
    async fn within_size_limit(
        &self,
        upload: &Upload,
        parts: &[(PartNumber, Option<PartChecksum>)],
    ) -> Result<(), ApiError> {
        let (None, Some(max)) = (upload.plan, upload.size_limit) else {
            return Ok(());
        };
        let stored = match self
            .inner
            .storage
            .list_parts(&upload.key, &upload.provider_upload_id)
            .await
        {
            Ok(stored) => stored,
            // Gone at the provider: the PUT fails there, the next status call
            // records it.
            Err(StorageError::NoSuchUpload) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let held: u64 = stored
            .iter()
            .filter(|p| !parts.iter().any(|(n, _)| n.get() == p.part_number))
            .map(|p| p.size)
            .sum();
        if held >= max {
            return Err(ApiError::TooLarge(format!(
                "this upload already holds {held} bytes in its other parts; the grant's maximum upload size is {max} bytes"
            )));
        }
        Ok(())
    }

    /// The life of part URLs a client asks for: 1 s to `MAX_PART_URL_TTL`
    /// (400 otherwise), `PART_URL_TTL` when it asks for none.
    pub(super) fn part_url_ttl(&self, asked: Option<u64>) -> Result<Duration, ApiError> {
        let s = &self.inner.settings;
        match asked {
            None => Ok(s.part_url_ttl),
            Some(n) if n >= 1 && n <= s.max_part_url_ttl.as_secs() => Ok(Duration::from_secs(n)),
            Some(_) => Err(ApiError::InvalidRequest(format!(
                "urlTtlSeconds: must be 1 to {} (MAX_PART_URL_TTL)",
                s.max_part_url_ttl.as_secs()
            ))),
        }
    }

    /// Presigns `parts` of `upload`, each URL valid for `ttl` (cut to the
    /// upload's expiry and its signing credentials').
    pub(super) async fn sign_parts(
        &self,
        upload: &Upload,
        parts: &[(PartNumber, Option<PartChecksum>)],
        ttl: Duration,
    ) -> Result<Vec<SignedPart>, ApiError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let (start, seconds, expires_at) = self.url_validity(upload, ttl)?;
        let mut out = Vec::with_capacity(parts.len());
        for (n, checksum) in parts {
            let p = self
                .inner
                .storage
                .presign_upload_part(
                    &PartToSign {
                        key: &upload.key,
                        upload_id: &upload.provider_upload_id,
                        number: *n,
                        // Sizes are bound into the URL where the plan knows them.
                        content_length: upload.plan.map(|p| p.part_len(*n)),
                        checksum: upload.checksum_algorithm.zip(checksum.as_ref()),
                    },
                    start,
                    seconds,
                )
                .await?;
            out.push(SignedPart {
                part_number: *n,
                url: p.url,
                size: upload.plan.map(|p| p.part_len(*n)),
                expires_at,
                headers: p.headers,
            });
        }
        // Once per request: a counter's lookup costs more than a signature's HMAC.
        crate::metrics::part_urls_signed(out.len());
        Ok(out)
    }

    /// When a presigned URL starts and for how long it lives: whole seconds, so
    /// that the URL's own expiry equals `expiresAt` exactly, and never past the
    /// upload's own expiry (completed uploads have none).
    pub(super) fn url_validity(
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
        // Temporary credentials: a URL is refused once they expire. (Ones
        // already past it are fetched again by the signing itself.)
        if let Some(until) = self.inner.storage.signing_credentials_expiry() {
            let left = (DateTime::<Utc>::from(until) - start).num_seconds();
            if left >= 1 {
                seconds = seconds.min(left);
            }
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

    /// A presigned POST for a whole small object (Companion's `/s3/params`,
    /// which Uppy uses for files it does not upload in parts). The key is
    /// chosen here like every other key; the policy pins it, the content type,
    /// the metadata and the largest size.
    /// For a grant, the policy holds its limits too: the size at most its
    /// `maxUploadSize`, an allowed content type, its forced metadata.
    pub async fn presign_post(
        &self,
        access: &Access,
        filename: &FileName,
        content_type: &ContentType,
        metadata: Metadata,
    ) -> Result<(crate::storage::PresignedPost, u64), ApiError> {
        let metadata = access.admit(None, content_type, metadata)?;
        let s = &self.inner.settings;
        if !s.provider.post_uploads {
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
            .min(s.plan_limits.max_part_size)
            .min(
                access
                    .grant
                    .as_ref()
                    .and_then(|g| g.limits.max_upload_size)
                    .unwrap_or(u64::MAX),
            );
        // It counts as an upload: refused at the active quotas (its size
        // unknown, nothing is added to the bytes), and one of the grant's
        // `maxUploads`.
        let grant = access.grant.as_ref().and_then(|g| {
            g.limits.max_uploads.map(|max| db::GrantUse {
                id: &g.id,
                max_uploads: max,
                expires_at: g.expires_at,
            })
        });
        if let Err(hit) = db::admit_within_quotas(
            &self.inner.db,
            &access.tenant,
            access.subject(),
            0,
            &s.quotas,
            grant,
        )
        .await?
        {
            return Err(ApiError::QuotaExceeded {
                quota: hit.quota,
                limit: hit.limit,
                current: hit.current,
            });
        }
        let post = self
            .inner
            .storage
            .presign_post_object(&key, content_type, &metadata, max, s.part_url_ttl)
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
        access: &Access,
        token: &str,
        disposition: impl FnOnce(&Upload) -> Option<String>,
    ) -> Result<DownloadUrl, ApiError> {
        let upload = self.load(access, token).await?;
        access.may_download()?;
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
}
