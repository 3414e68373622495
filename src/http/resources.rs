//! The resources the native routes answer with: the upload, its parts, and
//! the bodies around them.

use super::AppState;
use crate::broker::{ConflictingPart, DownloadUrl, SignedPart};

use crate::domain::upload::{Progress, StoredPart, Upload};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The upload resource of the contract.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadResource {
    pub id: String,
    pub resume_token: String,
    /// The grant subject the upload belongs to; null for uploads created with an API key.
    pub subject: Option<String>,
    pub status: &'static str,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The finished object's composite checksum (`base64-N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<&'static str>,
    /// The finished object's size as storage reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_size: Option<u64>,
}

impl UploadResource {
    pub fn new(state: &AppState, u: &Upload) -> Self {
        Self {
            id: u.id.to_string(),
            resume_token: state.broker.token_for(u).expose().to_string(),
            subject: u.subject.clone(),
            status: u.status.api_name(),
            bucket: u.bucket.clone(),
            key: u.key.as_str().to_string(),
            upload_id: u.provider_upload_id.clone(),
            filename: u.filename.as_str().to_string(),
            content_type: u.content_type.as_str().to_string(),
            // Resources are only made for uploads with a plan (tokens are only
            // handed out for those).
            size: u.plan.map(|p| p.size()).unwrap_or_default(),
            part_size: u.plan.map(|p| p.part_size()).unwrap_or_default(),
            part_count: u.plan.map(|p| p.part_count()).unwrap_or_default(),
            metadata: u.metadata.clone(),
            // Only a keyed hash of it is stored: shown where the request gave it.
            fingerprint: None,
            created_at: rfc3339(&u.created_at),
            expires_at: rfc3339(&u.expires_at),
            checksum_algorithm: u.checksum_algorithm.map(|a| a.as_str()),
            etag: u.etag.clone(),
            checksum_type: u.checksum.as_ref().map(|_| "COMPOSITE"),
            checksum: u.checksum.clone(),
            object_size: u.object_size,
        }
    }

    /// The fingerprint, where the request named it (create, lookup).
    pub fn with_fingerprint(mut self, fingerprint: Option<String>) -> Self {
        self.fingerprint = fingerprint;
        self
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartResource {
    pub part_number: u32,
    pub url: String,
    pub method: &'static str,
    pub size: u64,
    pub expires_at: String,
    pub headers: BTreeMap<String, String>,
}

impl From<SignedPart> for PartResource {
    fn from(p: SignedPart) -> Self {
        Self {
            part_number: p.part_number.get(),
            url: p.url,
            method: "PUT",
            size: p.size.unwrap_or_default(),
            expires_at: rfc3339(&p.expires_at),
            headers: p.headers,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

impl From<&StoredPart> for UploadedPart {
    fn from(p: &StoredPart) -> Self {
        Self {
            part_number: p.part_number,
            etag: p.etag.clone(),
            size: p.size,
            checksum: p.checksum.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateResponse {
    #[serde(flatten)]
    pub upload: UploadResource,
    pub parts: Vec<PartResource>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    #[serde(flatten)]
    pub upload: UploadResource,
    pub uploaded_parts: Vec<UploadedPart>,
    pub progress: ProgressResource,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeResponse {
    #[serde(flatten)]
    pub upload: UploadResource,
    pub uploaded_parts: Vec<UploadedPart>,
    pub missing_parts: Vec<u32>,
    pub parts: Vec<PartResource>,
    pub progress: ProgressResource,
    /// Stored parts that disagree with what the client said it uploaded.
    pub conflicting_parts: Vec<ConflictingPartResource>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FoundUpload {
    #[serde(flatten)]
    pub upload: UploadResource,
    /// `?fingerprint=` only (reconciled with ListParts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_parts: Option<Vec<UploadedPart>>,
    /// `?fingerprint=` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_parts: Option<Vec<u32>>,
    /// `?fingerprint=` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressResource>,
}

/// `GET /v1/uploads`: the uploads of a fingerprint (with progress), or a page
/// of the active uploads (`?status=active`, with `next`).
#[derive(Serialize, ToSchema)]
pub struct FoundUploads {
    pub uploads: Vec<FoundUpload>,
    /// `?status=active`: pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadResponse {
    pub url: String,
    pub method: &'static str,
    pub expires_at: String,
    pub etag: String,
    pub size: u64,
    pub headers: BTreeMap<String, String>,
}

impl From<DownloadUrl> for DownloadResponse {
    fn from(d: DownloadUrl) -> Self {
        Self {
            url: d.url,
            method: "GET",
            expires_at: rfc3339(&d.expires_at),
            etag: d.etag,
            size: d.size,
            headers: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PartsResponse {
    pub parts: Vec<PartResource>,
}

/// A stored part that disagrees with what the client says it uploaded.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConflictingPart)]
pub struct ConflictingPartResource {
    pub part_number: u32,
    /// `etag`, `checksum` or `size`.
    pub field: &'static str,
    pub expected: String,
    pub stored: String,
}

impl From<&ConflictingPart> for ConflictingPartResource {
    fn from(c: &ConflictingPart) -> Self {
        Self {
            part_number: c.part_number,
            field: c.field,
            expected: c.expected.clone(),
            stored: c.stored.clone(),
        }
    }
}

/// `progress` in responses.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Progress)]
pub struct ProgressResource {
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub uploaded_parts: u32,
    pub total_parts: u32,
    /// `uploadedBytes / totalBytes × 100`, not rounded.
    pub percent: f64,
}

impl From<Progress> for ProgressResource {
    fn from(p: Progress) -> Self {
        Self {
            uploaded_bytes: p.uploaded_bytes,
            total_bytes: p.total_bytes,
            uploaded_parts: p.uploaded_parts,
            total_parts: p.total_parts,
            percent: p.percent,
        }
    }
}
