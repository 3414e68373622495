//! The native API's upload routes (`/v1/uploads`).

use super::extract::{ApiJson, ApiPath, OptionalJson};
use super::openapi::{BodyErrors, CallerErrors, ErrorBody, StorageErrors, UploadErrors};
use super::resources::*;
use super::AppState;
use crate::broker::{CompleteWith, NewUpload, PartClaim, PartRequest, UploadRef, UploadState};
use crate::domain::checksum::ChecksumAlgorithm;
use crate::domain::request::{ContentType, FileName, Fingerprint, Metadata};
use crate::error::ApiError;
use crate::http::auth::Caller;
use axum::extract::{Query, State};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most part numbers one `…/parts` call may ask for.
pub const MAX_PARTS_PER_SIGN: usize = 1000;

/// The routes and their OpenAPI description, from one declaration each.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, find_by_fingerprint))
        .routes(routes!(status, abort))
        .routes(routes!(sign))
        .routes(routes!(resume))
        .routes(routes!(complete))
        .routes(routes!(download))
}

// ------------------------------------------------------------------ requests

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    /// 1 to 1024 bytes, no NUL.
    #[schema(min_length = 1, max_length = 1024)]
    filename: String,
    /// Bytes, up to the configured maximum (`MAX_UPLOAD_SIZE`, at most 5 TiB).
    #[schema(value_type = u64, minimum = 0, maximum = 5497558138880_u64)]
    size: serde_json::Number,
    /// A MIME type such as `video/mp4` (default `application/octet-stream`).
    #[schema(max_length = 255, example = "video/mp4")]
    content_type: Option<String>,
    /// 5 MiB to 5 GiB; the broker picks one when absent.
    #[schema(minimum = 5242880, maximum = 5368709120_u64)]
    part_size: Option<u64>,
    /// Keys of lower-case ASCII letters, digits and `-`; at most 2048 bytes in all.
    metadata: Option<BTreeMap<String, String>>,
    /// 1 to 256 characters, to find the upload again after losing its token.
    #[schema(min_length = 1, max_length = 256)]
    fingerprint: Option<String>,
    /// `SHA256` or `CRC32C`: parts are signed with their checksum.
    #[schema(pattern = "^(SHA256|CRC32C)$")]
    checksum_algorithm: Option<String>,
    /// How long the part URLs of this answer live, in seconds: 1 to
    /// `MAX_PART_URL_TTL` (default `PART_URL_TTL`), cut to the upload's expiry.
    #[schema(minimum = 1)]
    url_ttl_seconds: Option<u64>,
}

impl CreateBody {
    /// `max`: the largest size accepted (named in the error for sizes beyond 64 bits).
    fn parse(self, max: u64) -> Result<NewUpload, ApiError> {
        let size = match self.size.as_u64() {
            Some(n) => n,
            // A whole number too large for 64 bits is still a size: too large.
            None if self
                .size
                .as_f64()
                .is_some_and(|f| f >= 1.8e19 && f.fract() == 0.0) =>
            {
                return Err(ApiError::TooLarge(format!(
                    "size {} is over the maximum upload size of {max} bytes",
                    self.size
                )))
            }
            None => {
                return Err(ApiError::InvalidRequest(
                    "size: must be a whole number of bytes".into(),
                ))
            }
        };
        Ok(NewUpload {
            filename: FileName::parse(self.filename)?,
            size,
            part_size: self.part_size,
            content_type: ContentType::parse(self.content_type)?,
            metadata: Metadata::parse(self.metadata)?,
            fingerprint: self.fingerprint.map(Fingerprint::parse).transpose()?,
            checksum_algorithm: self
                .checksum_algorithm
                .map(|a| {
                    ChecksumAlgorithm::parse(&a).ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "checksumAlgorithm: {a:?} is not supported; use SHA256 or CRC32C"
                        ))
                    })
                })
                .transpose()?,
            url_ttl_seconds: self.url_ttl_seconds,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignBody {
    part_numbers: Option<Vec<u32>>,
    parts: Option<Vec<SignPart>>,
    /// How long the URLs live, in seconds: 1 to `MAX_PART_URL_TTL` (default
    /// `PART_URL_TTL`), cut to the upload's expiry.
    #[schema(minimum = 1)]
    url_ttl_seconds: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignPart {
    part_number: u32,
    checksum: String,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ResumeBody {
    parts: Option<Vec<ClaimBody>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ClaimBody {
    part_number: u32,
    etag: Option<String>,
    checksum: Option<String>,
    size: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FingerprintQuery {
    /// The fingerprint given at create.
    fingerprint: Option<String>,
    /// `active`, without `fingerprint`: list every active upload of the caller
    /// (a grant: its subject's), newest first, a page at a time.
    status: Option<String>,
    /// With `status=active`: most uploads per page, 1 to 1000 (default 100).
    limit: Option<i64>,
    /// With `status=active`: the `next` of the page before.
    before: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DownloadBody {
    /// `attachment` (default) or `inline`.
    disposition: Option<String>,
    /// File name offered to the browser; the upload's filename by default.
    filename: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CompleteBody {
    parts: Option<Vec<CompletePart>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CompletePart {
    part_number: u32,
    etag: String,
    checksum: Option<String>,
}

// ------------------------------------------------------------------ handlers

#[utoipa::path(post, path = "/v1/uploads", security(("bearer" = [])), tag = "uploads",
    summary = "Create an upload",
    description = "Creates the multipart upload at the provider, plans its parts, records it, and signs the first parts (none for checksum-bound uploads).",
    request_body = CreateBody,
    responses((status = 201, description = "The upload and the first presigned parts", body = CreateResponse),
        (status = 403, description = "FORBIDDEN: the grant does not allow this content type", body = ErrorBody), CallerErrors, BodyErrors, StorageErrors))]
async fn create(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<CreateResponse>), ApiError> {
    let req = body.parse(state.broker.settings().plan_limits.max_upload_size)?;
    let fingerprint = req.fingerprint.as_ref().map(|f| f.as_str().to_string());
    let (upload, parts) = state.broker.create(&access, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateResponse {
            upload: UploadResource::new(&state, &upload).with_fingerprint(fingerprint),
            parts: parts.into_iter().map(Into::into).collect(),
        }),
    ))
}

#[utoipa::path(post, path = "/v1/uploads/{token}/parts", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "Presign part URLs",
    request_body = SignBody,
    responses((status = 200, description = "Presigned UploadPart URLs", body = PartsResponse), (status = 409, description = "UPLOAD_NOT_ACTIVE: the upload is completed or aborted", body = ErrorBody), CallerErrors, UploadErrors, BodyErrors, StorageErrors))]
async fn sign(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<SignBody>,
) -> Result<Json<PartsResponse>, ApiError> {
    let requests: Vec<PartRequest> = match (body.part_numbers, body.parts) {
        (Some(numbers), None) => numbers
            .into_iter()
            .map(|n| PartRequest {
                part_number: n,
                checksum: None,
            })
            .collect(),
        (None, Some(parts)) => parts
            .into_iter()
            .map(|p| PartRequest {
                part_number: p.part_number,
                checksum: Some(p.checksum),
            })
            .collect(),
        _ => {
            return Err(ApiError::InvalidRequest(
                "give either partNumbers: [n, …] or parts: [{partNumber, checksum}, …]".into(),
            ))
        }
    };
    let n = requests.len();
    if n == 0 || n > MAX_PARTS_PER_SIGN {
        return Err(ApiError::InvalidRequest(format!(
            "partNumbers: give 1 to {MAX_PARTS_PER_SIGN} part numbers (got {n})"
        )));
    }
    let parts = state
        .broker
        .sign(
            &access,
            &UploadRef::Token(token),
            &requests,
            body.url_ttl_seconds,
        )
        .await?;
    Ok(Json(PartsResponse {
        parts: parts.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/uploads/{token}/resume", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "Resume: reconcile with the provider and sign the first missing parts",
    request_body(content = Option<ResumeBody>, description = "Optional: what the client believes it uploaded"),
    responses((status = 200, description = "Uploaded and missing parts, URLs for the first missing ones", body = ResumeResponse), (status = 409, description = "UPLOAD_NOT_ACTIVE: the upload is completed or aborted", body = ErrorBody), CallerErrors, UploadErrors, BodyErrors, StorageErrors))]
async fn resume(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
    OptionalJson(body): OptionalJson<ResumeBody>,
) -> Result<Json<ResumeResponse>, ApiError> {
    let claims: Vec<PartClaim> = body
        .parts
        .unwrap_or_default()
        .into_iter()
        .map(|c| PartClaim {
            part_number: c.part_number,
            etag: c.etag,
            checksum: c.checksum,
            size: c.size,
        })
        .collect();
    let (s, parts) = state.broker.resume(&access, &token, &claims).await?;
    Ok(Json(ResumeResponse {
        upload: UploadResource::new(&state, &s.upload),
        uploaded_parts: s.uploaded.iter().map(Into::into).collect(),
        missing_parts: s.missing.iter().map(|n| n.get()).collect(),
        parts: parts.into_iter().map(Into::into).collect(),
        progress: s.progress.into(),
        conflicting_parts: s.conflicting.iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/uploads/{token}", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "An upload's status, reconciled with the provider",
    responses((status = 200, description = "The upload, its uploaded parts and progress", body = StatusResponse), CallerErrors, UploadErrors, StorageErrors))]
async fn status(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<StatusResponse>, ApiError> {
    let s: UploadState = state
        .broker
        .status(&access, &UploadRef::Token(token))
        .await?;
    Ok(Json(StatusResponse {
        upload: UploadResource::new(&state, &s.upload),
        uploaded_parts: s.uploaded.iter().map(Into::into).collect(),
        progress: s.progress.into(),
    }))
}

#[utoipa::path(post, path = "/v1/uploads/{token}/complete", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "Complete the upload (idempotent, exactly once)",
    request_body(content = Option<CompleteBody>, description = "Optional: parts whose ETags (and checksums) must match storage"),
    responses((status = 200, description = "The completed upload with the object's etag", body = UploadResource), (status = 409, description = "UPLOAD_NOT_ACTIVE (aborted), PARTS_MISSING (missingParts lists them) or PART_MISMATCH", body = ErrorBody), CallerErrors, UploadErrors, BodyErrors, StorageErrors))]
async fn complete(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<Json<UploadResource>, ApiError> {
    let claimed = body.parts.map(|ps| {
        ps.into_iter()
            .map(|p| PartClaim {
                part_number: p.part_number,
                etag: Some(p.etag),
                checksum: p.checksum,
                size: None,
            })
            .collect::<Vec<_>>()
    });
    let upload = state
        .broker
        .complete(
            &access,
            UploadRef::Token(token),
            CompleteWith::Listed(claimed),
        )
        .await?;
    Ok(Json(UploadResource::new(&state, &upload)))
}

#[utoipa::path(delete, path = "/v1/uploads/{token}", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "Abort an upload",
    responses((status = 204, description = "Aborted (also when it already was)"), (status = 409, description = "UPLOAD_NOT_ACTIVE: the upload is completed or being completed", body = ErrorBody), CallerErrors, UploadErrors, StorageErrors))]
async fn abort(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.broker.abort(&access, UploadRef::Token(token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/uploads", security(("bearer" = [])), tag = "uploads", params(FingerprintQuery),
    summary = "Find active uploads by fingerprint, or list them all",
    description = "`?fingerprint=`: the caller's active uploads of that fingerprint, each reconciled with ListParts. `?status=active`: every active upload of the caller (a grant: its subject's), newest first, a page at a time (`limit`, `before`), without progress.",
    responses((status = 200, description = "The caller's active uploads, newest first", body = FoundUploads),
        (status = 400, description = "INVALID_REQUEST: fingerprint missing or invalid, or a bad listing parameter", body = ErrorBody), CallerErrors, StorageErrors))]
async fn find_by_fingerprint(
    State(state): State<AppState>,
    Caller(access): Caller,
    query: Result<Query<FingerprintQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FoundUploads>, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(ApiError::InvalidRequest(
            "the query string is malformed".into(),
        ));
    };
    let Some(fingerprint) = q.fingerprint else {
        return match q.status.as_deref() {
            Some("active") => {
                let page = list_active(&state, &access, q.limit, q.before.as_deref()).await?;
                Ok(Json(page))
            }
            Some(_) => Err(ApiError::InvalidRequest(
                "status: only active uploads can be listed".into(),
            )),
            None => Err(ApiError::InvalidRequest(
                "fingerprint: the query parameter is required (or status=active to list every active upload)"
                    .into(),
            )),
        };
    };
    let fingerprint = Fingerprint::parse(fingerprint)?;
    let found = state
        .broker
        .find_by_fingerprint(&access, &fingerprint)
        .await?;
    Ok(Json(FoundUploads {
        uploads: found
            .iter()
            .map(|s| FoundUpload {
                upload: UploadResource::new(&state, &s.upload)
                    .with_fingerprint(Some(fingerprint.as_str().to_string())),
                uploaded_parts: Some(s.uploaded.iter().map(Into::into).collect()),
                missing_parts: Some(s.missing.iter().map(|n| n.get()).collect()),
                progress: Some(s.progress.into()),
            })
            .collect(),
        next: None,
    }))
}

async fn list_active(
    state: &AppState,
    access: &crate::domain::access::Access,
    limit: Option<i64>,
    before: Option<&str>,
) -> Result<FoundUploads, ApiError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit: must be 1 to 1000".into()));
    }
    let bad = || ApiError::InvalidRequest("before: not a cursor this listing gave".into());
    let before = match before {
        None => None,
        Some(c) => {
            let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?)
                .map_err(|_| bad())?;
            let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
            let at = chrono::DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?)
                .ok_or_else(bad)?;
            Some((at, uuid::Uuid::try_parse(id).map_err(|_| bad())?))
        }
    };
    let uploads = state.broker.list_active(access, before, limit).await?;
    let next = (uploads.len() as i64 == limit)
        .then(|| uploads.last())
        .flatten()
        .map(|u| URL_SAFE_NO_PAD.encode(format!("{}.{}", u.created_at.timestamp_micros(), u.id)));
    Ok(FoundUploads {
        uploads: uploads
            .iter()
            .filter(|u| u.plan.is_some())
            .map(|u| FoundUpload {
                upload: UploadResource::new(state, u),
                uploaded_parts: None,
                missing_parts: None,
                progress: None,
            })
            .collect(),
        next,
    })
}

#[utoipa::path(post, path = "/v1/uploads/{token}/download", params(("token" = String, Path, description = "The upload's resume token")), security(("bearer" = [])), tag = "uploads",
    summary = "A short-lived presigned GET of a completed upload",
    request_body(content = Option<DownloadBody>, description = "Optional"),
    responses((status = 200, description = "A presigned GET URL; Range and If-Match work on it", body = DownloadResponse), (status = 409, description = "UPLOAD_NOT_ACTIVE: the upload is not completed", body = ErrorBody), CallerErrors, UploadErrors, BodyErrors, StorageErrors))]
async fn download(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(token): ApiPath<String>,
    OptionalJson(body): OptionalJson<DownloadBody>,
) -> Result<Json<DownloadResponse>, ApiError> {
    let kind = match body.disposition.as_deref() {
        None | Some("attachment") => "attachment",
        Some("inline") => "inline",
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "disposition: {other:?} must be \"attachment\" or \"inline\""
            )))
        }
    };
    if let Some(f) = &body.filename {
        FileName::parse(f.clone())?;
    }
    let d = state
        .broker
        .download(&access, &token, |upload| {
            let name = body.filename.as_deref().unwrap_or(upload.filename.as_str());
            Some(super::disposition::content_disposition(kind, name))
        })
        .await?;
    Ok(Json(d.into()))
}
