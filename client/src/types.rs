//! The broker's resources, as `docs/api.md` describes them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The upload resource, with the fields some routes add (`uploadedParts`,
/// `missingParts`, `progress`, `parts`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub id: String,
    pub resume_token: String,
    pub status: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_parts: Option<Vec<UploadedPart>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_parts: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing)]
    pub parts: Vec<PresignedPart>,
}

impl Upload {
    /// Offset and size of part `n` (1-based) in the plan.
    pub fn part_range(&self, n: u32) -> (u64, u64) {
        let offset = (n as u64 - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedPart {
    pub part_number: u32,
    pub url: String,
    #[serde(default)]
    pub method: String,
    pub size: u64,
    pub expires_at: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub uploaded_parts: u32,
    pub total_parts: u32,
    pub percent: f64,
}

/// A presigned GET of a completed upload (`POST /v1/uploads/{token}/download`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadInfo {
    pub url: String,
    pub expires_at: String,
    pub etag: String,
    pub size: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}
