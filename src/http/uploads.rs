//! The native API's upload routes (`/v1/uploads`).

use super::extract::{ApiJson, ApiPath, OptionalJson};
use super::AppState;
use crate::broker::{ClaimedPart, NewUpload, SignedPart, UploadState};
use crate::domain::request::{ContentType, FileName, Fingerprint, Metadata};
use crate::domain::upload::{Progress, StoredPart, Upload};
use crate::error::ApiError;
use crate::http::auth::Tenant;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most part numbers one `…/parts` call may ask for.
pub const MAX_PARTS_PER_SIGN: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", post(create))
        .route("/v1/uploads/{token}", get(status).delete(abort))
        .route("/v1/uploads/{token}/parts", post(sign))
        .route("/v1/uploads/{token}/resume", post(resume))
        .route("/v1/uploads/{token}/complete", post(complete))
}

// ------------------------------------------------------------------ requests

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    filename: String,
    size: u64,
    content_type: Option<String>,
    part_size: Option<u64>,
    metadata: Option<BTreeMap<String, String>>,
    fingerprint: Option<String>,
}

impl CreateBody {
    fn parse(self) -> Result<NewUpload, ApiError> {
        Ok(NewUpload {
            filename: FileName::parse(self.filename)?,
            size: self.size,
            part_size: self.part_size,
            content_type: ContentType::parse(self.content_type)?,
            metadata: Metadata::parse(self.metadata)?,
            fingerprint: self.fingerprint.map(Fingerprint::parse).transpose()?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignBody {
    part_numbers: Vec<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CompleteBody {
    parts: Option<Vec<CompletePart>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompletePart {
    part_number: u32,
    etag: String,
}

// ------------------------------------------------------------------ responses

pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The upload resource of the contract.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadResource {
    id: String,
    resume_token: String,
    status: &'static str,
    bucket: String,
    key: String,
    upload_id: String,
    filename: String,
    content_type: String,
    size: u64,
    part_size: u64,
    part_count: u32,
    metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
}

impl UploadResource {
    pub fn new(state: &AppState, u: &Upload) -> Self {
        Self {
            id: u.id.to_string(),
            resume_token: state.broker.token_for(u).expose().to_string(),
            status: u.status.as_str(),
            bucket: u.bucket.clone(),
            key: u.key.as_str().to_string(),
            upload_id: u.provider_upload_id.clone(),
            filename: u.filename.clone(),
            content_type: u.content_type.clone(),
            size: u.plan.size(),
            part_size: u.plan.part_size(),
            part_count: u.plan.part_count(),
            metadata: u.metadata.clone(),
            fingerprint: u.fingerprint.clone(),
            created_at: rfc3339(&u.created_at),
            expires_at: rfc3339(&u.expires_at),
            etag: u.etag.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartResource {
    part_number: u32,
    url: String,
    method: &'static str,
    size: u64,
    expires_at: String,
    headers: BTreeMap<String, String>,
}

impl From<SignedPart> for PartResource {
    fn from(p: SignedPart) -> Self {
        Self {
            part_number: p.part_number.get(),
            url: p.url,
            method: "PUT",
            size: p.size,
            expires_at: rfc3339(&p.expires_at),
            headers: p.headers,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedPart {
    part_number: u32,
    etag: String,
    size: u64,
}

impl From<&StoredPart> for UploadedPart {
    fn from(p: &StoredPart) -> Self {
        Self {
            part_number: p.part_number,
            etag: p.etag.clone(),
            size: p.size,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateResponse {
    #[serde(flatten)]
    upload: UploadResource,
    parts: Vec<PartResource>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusResponse {
    #[serde(flatten)]
    upload: UploadResource,
    uploaded_parts: Vec<UploadedPart>,
    progress: Progress,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResumeResponse {
    #[serde(flatten)]
    upload: UploadResource,
    uploaded_parts: Vec<UploadedPart>,
    missing_parts: Vec<u32>,
    parts: Vec<PartResource>,
    progress: Progress,
}

#[derive(Serialize)]
struct PartsResponse {
    parts: Vec<PartResource>,
}

// ------------------------------------------------------------------ handlers

async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<CreateResponse>), ApiError> {
    let req = body.parse()?;
    let (upload, parts) = state.broker.create(&tenant, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateResponse {
            upload: UploadResource::new(&state, &upload),
            parts: parts.into_iter().map(Into::into).collect(),
        }),
    ))
}

async fn sign(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<SignBody>,
) -> Result<Json<PartsResponse>, ApiError> {
    let n = body.part_numbers.len();
    if n == 0 || n > MAX_PARTS_PER_SIGN {
        return Err(ApiError::InvalidRequest(format!(
            "partNumbers: give 1 to {MAX_PARTS_PER_SIGN} part numbers (got {n})"
        )));
    }
    let mut seen = BTreeSet::new();
    for &p in &body.part_numbers {
        if !seen.insert(p) {
            return Err(ApiError::InvalidRequest(format!(
                "partNumbers: {p} is repeated"
            )));
        }
    }
    let parts = state
        .broker
        .sign(&tenant, &token, &body.part_numbers)
        .await?;
    Ok(Json(PartsResponse {
        parts: parts.into_iter().map(Into::into).collect(),
    }))
}

async fn resume(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<ResumeResponse>, ApiError> {
    let (s, parts) = state.broker.resume(&tenant, &token).await?;
    Ok(Json(ResumeResponse {
        upload: UploadResource::new(&state, &s.upload),
        uploaded_parts: s.uploaded.iter().map(Into::into).collect(),
        missing_parts: s.missing.iter().map(|n| n.get()).collect(),
        parts: parts.into_iter().map(Into::into).collect(),
        progress: s.progress,
    }))
}

async fn status(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let s: UploadState = state.broker.status(&tenant, &token).await?;
    Ok(Json(StatusResponse {
        upload: UploadResource::new(&state, &s.upload),
        uploaded_parts: s.uploaded.iter().map(Into::into).collect(),
        progress: s.progress,
    }))
}

async fn complete(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath(token): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<Json<UploadResource>, ApiError> {
    let claimed = body.parts.map(|ps| {
        ps.into_iter()
            .map(|p| ClaimedPart {
                part_number: p.part_number,
                etag: p.etag,
            })
            .collect::<Vec<_>>()
    });
    if let Some(c) = &claimed {
        let mut seen = BTreeSet::new();
        for p in c {
            if !seen.insert(p.part_number) {
                return Err(ApiError::InvalidRequest(format!(
                    "parts: part {} is repeated",
                    p.part_number
                )));
            }
        }
    }
    let upload = state.broker.complete(&tenant, &token, claimed).await?;
    Ok(Json(UploadResource::new(&state, &upload)))
}

async fn abort(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath(token): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.broker.abort(&tenant, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
