//! The storage adapter: the only module that knows aws-sdk-s3.
//!
//! Methods are the domain's verbs over the few S3 calls the broker needs. Each is
//! instrumented with the operation and key, never with a URL, body or credential.

mod error;
mod objects;
mod presign;
mod sigv4;

pub use error::StorageError;

use crate::config::StorageConfig;
use crate::domain::checksum::{ChecksumAlgorithm, PartChecksum};
use crate::domain::object_key::ObjectKey;
use crate::domain::part_plan::PartNumber;
use crate::domain::request::{ContentType, Metadata};
use crate::domain::upload::{FinishedObject, StoredPart};
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider as TlsProvider};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// What a part URL signs: the part, and where known its exact length and checksum.
#[derive(Clone, Copy)]
pub struct PartToSign<'a> {
    pub key: &'a ObjectKey,
    pub upload_id: &'a str,
    pub number: PartNumber,
    pub content_length: Option<u64>,
    pub checksum: Option<(ChecksumAlgorithm, &'a PartChecksum)>,
}

/// A presigned `UploadPart` request.
#[derive(Clone)]
pub struct PresignedPart {
    pub url: String,
    /// Headers the URL signs, other than `host`, that the client must send.
    pub headers: BTreeMap<String, String>,
}

/// A presigned POST (S3's browser-form upload of a whole object): the form
/// fields to send, file last, to `url`.
#[derive(Clone)]
pub struct PresignedPost {
    pub url: String,
    pub fields: BTreeMap<String, String>,
}

/// What an abort found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOutcome {
    Aborted,
    AlreadyGone,
}

/// A finished object as HeadObject reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: String,
}

/// A multipart upload in progress, as ListMultipartUploads reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgressUpload {
    pub key: ObjectKey,
    pub upload_id: String,
    pub initiated: Option<chrono::DateTime<chrono::Utc>>,
}

/// The bucket the broker writes to.
#[derive(Clone, Debug)]
pub struct Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    list_parts_page_size: i32,
    /// Base URL of objects: `{endpoint}/{bucket}` (path style) or the virtual-host form.
    object_base: String,
    /// For signing POST policies (the SDK presigns requests, not policies).
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    region: String,
    /// CompleteMultipartUpload's own operation timeout (it may take minutes).
    complete_timeout: Duration,
    /// Presigns UploadPart without the SDK (cached credentials and signing keys).
    presigner: std::sync::Arc<sigv4::PartPresigner>,
}

impl Storage {
    /// When the credentials part URLs are signed with expire (temporary
    /// credentials), as last fetched; `None` for credentials that do not.
    pub fn signing_credentials_expiry(&self) -> Option<std::time::SystemTime> {
        self.presigner.credentials_expiry()
    }

    /// Builds the client: one rustls/ring HTTP stack, the region set explicitly
    /// (no metadata probing), and checksums only where an operation requires them,
    /// so presigned part URLs never carry a checksum the client cannot match.
    pub async fn connect(cfg: &StorageConfig) -> Self {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
            .build_https();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .http_client(http_client)
            .load()
            .await;
        // Every call ends within the operation timeout (retries included), so a
        // claimant whose lease runs out has no provider call left in flight.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(cfg.operation_timeout.min(Duration::from_secs(10)))
            .operation_timeout(cfg.operation_timeout)
            .build();
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .timeout_config(timeouts)
            .force_path_style(cfg.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            b = b.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            list_parts_page_size: cfg.list_parts_page_size,
            object_base: object_base(cfg),
            credentials: sdk.credentials_provider(),
            region: cfg.region.clone(),
            complete_timeout: cfg.complete_timeout,
            presigner: Default::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The URL of an object (what S3 reports as `Location`).
    pub fn object_url(&self, key: &ObjectKey) -> String {
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|seg| percent_encoding::utf8_percent_encode(seg, PATH_SEGMENT).to_string())
            .collect();
        format!("{}/{}", self.object_base, path.join("/"))
    }

    /// The same storage with another bucket (tests, multi-bucket tooling).
    pub fn with_bucket(&self, bucket: impl Into<String>) -> Self {
        let bucket = bucket.into();
        Self {
            object_base: self.object_base.replace(&self.bucket, &bucket),
            bucket,
            ..self.clone()
        }
    }

    /// The underlying SDK client, for tests and tools that inspect the bucket.
    pub fn sdk_client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    #[tracing::instrument(name = "storage.create_multipart_upload", skip_all, fields(key = key.as_str()))]
    pub async fn create_multipart_upload(
        &self,
        key: &ObjectKey,
        content_type: &ContentType,
        metadata: &Metadata,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String, StorageError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type.as_str());
        if let Some(alg) = checksum {
            req = req
                .checksum_algorithm(sdk_algorithm(alg))
                .checksum_type(ChecksumType::Composite);
        }
        let call = req
            .set_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .send();
        let out = observed("CreateMultipartUpload", async {
            call.await
                .map_err(|e| StorageError::from_sdk("CreateMultipartUpload", e))
        })
        .await?;
        out.upload_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StorageError::Provider {
                operation: "CreateMultipartUpload",
                code: "MissingUploadId".into(),
                message: "the provider returned no UploadId".into(),
            })
    }

    /// Every part the provider holds for the upload, following all pages.
    #[tracing::instrument(name = "storage.list_parts", skip_all, fields(key = key.as_str(), pages))]
    pub async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = 0u32;
        loop {
            let out = observed("ListParts", async {
                self.client
                    .list_parts()
                    .bucket(&self.bucket)
                    .key(key.as_str())
                    .upload_id(upload_id)
                    .max_parts(self.list_parts_page_size)
                    .set_part_number_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("ListParts", e))
            })
            .await?;
            pages += 1;
            for p in out.parts() {
                let (Some(n), Some(etag)) = (p.part_number(), p.e_tag()) else {
                    continue;
                };
                parts.push(StoredPart {
                    part_number: u32::try_from(n).unwrap_or(0),
                    etag: etag.to_string(),
                    size: u64::try_from(p.size().unwrap_or(0)).unwrap_or(0),
                    checksum: p
                        .checksum_sha256()
                        .or(p.checksum_crc32_c())
                        .map(str::to_string),
                });
            }
            let next = out.next_part_number_marker().filter(|m| !m.is_empty());
            match (out.is_truncated().unwrap_or(false), next) {
                (true, Some(m)) if marker_advances(&parts, m) => marker = Some(m.to_string()),
                (true, _) => {
                    return Err(StorageError::Provider {
                        operation: "ListParts",
                        code: "BadPagination".into(),
                        message: "a truncated page without a usable next marker".into(),
                    })
                }
                (false, _) => break,
            }
        }
        tracing::Span::current().record("pages", pages);
        parts.sort_by_key(|p| p.part_number);
        parts.dedup_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Completes the upload with exactly these parts (and their checksums).
    #[tracing::instrument(name = "storage.complete_multipart_upload", skip_all, fields(key = key.as_str(), parts = parts.len()))]
    pub async fn complete_multipart_upload(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[StoredPart],
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<FinishedObject, StorageError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        let b = CompletedPart::builder()
                            .part_number(p.part_number as i32)
                            .e_tag(&p.etag);
                        match (checksum, &p.checksum) {
                            (Some(ChecksumAlgorithm::Sha256), Some(c)) => b.checksum_sha256(c),
                            (Some(ChecksumAlgorithm::Crc32c), Some(c)) => b.checksum_crc32_c(c),
                            _ => b,
                        }
                        .build()
                    })
                    .collect(),
            ))
            .build();
        let out = observed("CompleteMultipartUpload", async {
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .multipart_upload(completed)
                .customize()
                .config_override(
                    aws_sdk_s3::config::Builder::default().timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(self.complete_timeout)
                            .build(),
                    ),
                )
                .send()
                .await
                .map_err(|e| StorageError::from_sdk("CompleteMultipartUpload", e))
        })
        .await?;
        Ok(FinishedObject {
            checksum: out
                .checksum_sha256()
                .or(out.checksum_crc32_c())
                .map(str::to_string),
            etag: out.e_tag.unwrap_or_default(),
            size: None,
        })
    }

    /// Aborts the upload; one the provider no longer has counts as done.
    #[tracing::instrument(name = "storage.abort_multipart_upload", skip_all, fields(key = key.as_str()))]
    pub async fn abort_multipart_upload(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<AbortOutcome, StorageError> {
        let call = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send();
        match observed("AbortMultipartUpload", async {
            call.await
                .map_err(|e| StorageError::from_sdk("AbortMultipartUpload", e))
        })
        .await
        {
            Ok(_) => Ok(AbortOutcome::Aborted),
            Err(StorageError::NoSuchUpload) => Ok(AbortOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// Every multipart upload in progress under `prefix`, following all pages.
    #[tracing::instrument(name = "storage.list_multipart_uploads", skip_all, fields(pages))]
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<InProgressUpload>, StorageError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        let mut pages = 0u32;
        loop {
            let page = observed("ListMultipartUploads", async {
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .max_uploads(self.list_parts_page_size)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("ListMultipartUploads", e))
            })
            .await?;
            pages += 1;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                out.push(InProgressUpload {
                    key: ObjectKey::from_stored(key.to_string()),
                    upload_id: id.to_string(),
                    initiated: u
                        .initiated()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            let next_key = page
                .next_key_marker()
                .filter(|k| !k.is_empty())
                .map(str::to_string);
            let next_id = page
                .next_upload_id_marker()
                .filter(|k| !k.is_empty())
                .map(str::to_string);
            if next_key.is_none() && next_id.is_none() {
                return Err(StorageError::Provider {
                    operation: "ListMultipartUploads",
                    code: "BadPagination".into(),
                    message: "a truncated page without a next marker".into(),
                });
            }
            key_marker = next_key;
            id_marker = next_id;
        }
        tracing::Span::current().record("pages", pages);
        Ok(out)
    }
}

/// Everything but RFC 3986's unreserved characters is escaped in a key segment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn object_base(cfg: &StorageConfig) -> String {
    match &cfg.endpoint {
        Some(e) if cfg.force_path_style => format!("{}/{}", e.trim_end_matches('/'), cfg.bucket),
        Some(e) => match e.split_once("://") {
            Some((scheme, host)) => {
                format!("{scheme}://{}.{}", cfg.bucket, host.trim_end_matches('/'))
            }
            None => format!("{}/{}", e.trim_end_matches('/'), cfg.bucket),
        },
        None => format!("https://{}.s3.{}.amazonaws.com", cfg.bucket, cfg.region),
    }
}

fn sdk_algorithm(a: ChecksumAlgorithm) -> aws_sdk_s3::types::ChecksumAlgorithm {
    match a {
        ChecksumAlgorithm::Sha256 => aws_sdk_s3::types::ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Crc32c => aws_sdk_s3::types::ChecksumAlgorithm::Crc32C,
    }
}

/// Runs one provider call, recording its outcome and latency.
async fn observed<T>(
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    let start = std::time::Instant::now();
    let r = call.await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(StorageError::NoSuchUpload) => "no_such_upload",
        Err(StorageError::Unreachable { .. }) => "unreachable",
        Err(_) => "error",
    };
    crate::metrics::storage_call(operation, outcome, start.elapsed());
    r
}

/// A next marker must move past the parts seen so far, or paging would loop.
fn marker_advances(parts: &[StoredPart], marker: &str) -> bool {
    let last = parts.iter().map(|p| p.part_number).max().unwrap_or(0);
    marker.parse::<u32>().is_ok_and(|m| m >= last && m > 0)
}
