//! Companion-compatible S3 multipart routes, so that Uppy's `@uppy/aws-s3`
//! (with `companionEndpoint`) works unchanged. Backed by the same upload
//! records, tenants, expiry, sweep and verified completion as the native API;
//! unlike Companion, a caller can only act on its own tenant's uploads, named
//! by the pair (uploadId, key).

use super::extract::{ApiJson, ApiPath};
use super::openapi::{BodyErrors, CallerErrors, ErrorBody, StorageErrors, UploadErrors};
use super::AppState;
use crate::broker::{CompleteWith, PartClaim, PartRequest, UploadRef};
use crate::domain::request::{companion_metadata, ContentType, FileName};
use crate::error::ApiError;
use crate::http::auth::Caller;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most part numbers one batch may ask for.
const MAX_BATCH: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(sign_batch))
        .routes(routes!(sign_one))
        .routes(routes!(list_parts, abort))
        .routes(routes!(complete))
        .routes(routes!(params))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    filename: String,
    #[serde(rename = "type")]
    content_type: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    key: String,
    upload_id: String,
    bucket: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// The object key returned at create.
    key: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct BatchQuery {
    /// The object key returned at create.
    key: Option<String>,
    /// Comma-separated part numbers.
    part_numbers: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SignedUrl {
    url: String,
    /// Seconds the URL stays valid.
    expires: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedBatch {
    presigned_urls: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPart {
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    size: u64,
}

#[derive(Deserialize, ToSchema)]
pub struct CompleteBody {
    parts: Vec<CompletePart>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CompletePart {
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

#[derive(Serialize, ToSchema)]
pub struct Completed {
    location: String,
    key: String,
    bucket: String,
}

fn upload_ref(upload_id: String, key: Option<String>) -> Result<UploadRef, ApiError> {
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::InvalidRequest("key: the query parameter is required".into()))?;
    Ok(UploadRef::Provider { upload_id, key })
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|_| ApiError::InvalidRequest("the query string is malformed".into()))
}

type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

#[utoipa::path(operation_id = "companion_create", post, path = "/multipart", tag = "companion", security(("bearer" = [])),
    summary = "Create a multipart upload (Companion: createMultipartUpload)",
    request_body = CreateBody,
    responses((status = 200, description = "The key and uploadId to use from now on", body = Created),
        (status = 403, description = "FORBIDDEN: the grant does not allow this content type", body = ErrorBody), BodyErrors, CallerErrors, StorageErrors))]
async fn create(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<Created>, ApiError> {
    let filename = FileName::parse(body.filename)?;
    // Browsers report "" for unknown types.
    let content_type = ContentType::parse(body.content_type.filter(|t| !t.is_empty()))?;
    let metadata = companion_metadata(body.metadata)?;
    let upload = state
        .broker
        .create_open(&access, filename, content_type, metadata)
        .await?;
    Ok(Json(Created {
        key: upload.key.as_str().to_string(),
        upload_id: upload.provider_upload_id.clone(),
        bucket: upload.bucket.clone(),
    }))
}

#[utoipa::path(operation_id = "companion_sign_batch", get, path = "/multipart/{uploadId}/batch", tag = "companion", security(("bearer" = [])),
    summary = "Presign several parts (Companion: signPart, batched)",
    params(("uploadId" = String, Path), BatchQuery),
    responses((status = 200, description = "Part number → presigned URL", body = SignedBatch),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such (uploadId, key) for this tenant", body = ErrorBody),
        (status = 409, description = "UPLOAD_NOT_ACTIVE", body = ErrorBody), CallerErrors, UploadErrors))]
async fn sign_batch(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(upload_id): ApiPath<String>,
    q: Q<BatchQuery>,
) -> Result<Json<SignedBatch>, ApiError> {
    let q = query(q)?;
    let r = upload_ref(upload_id, q.key)?;
    let numbers = q
        .part_numbers
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ApiError::InvalidRequest("partNumbers: comma-separated part numbers".into())
        })?;
    if numbers.is_empty() || numbers.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "partNumbers: give 1 to {MAX_BATCH} part numbers"
        )));
    }
    let mut unique = numbers.clone();
    unique.sort_unstable();
    unique.dedup();
    let requests: Vec<PartRequest> = unique
        .iter()
        .map(|&n| PartRequest {
            part_number: n,
            checksum: None,
        })
        .collect();
    let parts = state.broker.sign(&access, &r, &requests, None).await?;
    Ok(Json(SignedBatch {
        presigned_urls: parts
            .into_iter()
            .map(|p| (p.part_number.get().to_string(), p.url))
            .collect(),
    }))
}

#[utoipa::path(operation_id = "companion_sign_one", get, path = "/multipart/{uploadId}/{partNumber}", tag = "companion", security(("bearer" = [])),
    summary = "Presign one part (Companion: signPart)",
    params(("uploadId" = String, Path), ("partNumber" = u32, Path), KeyQuery),
    responses((status = 200, description = "A presigned UploadPart URL", body = SignedUrl),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such (uploadId, key) for this tenant", body = ErrorBody),
        (status = 409, description = "UPLOAD_NOT_ACTIVE", body = ErrorBody), CallerErrors, UploadErrors))]
async fn sign_one(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath((upload_id, part)): ApiPath<(String, String)>,
    q: Q<KeyQuery>,
) -> Result<Json<SignedUrl>, ApiError> {
    let r = upload_ref(upload_id, query(q)?.key)?;
    let n: u32 = part.parse().map_err(|_| {
        ApiError::InvalidRequest(format!("partNumber: {part:?} is not a part number"))
    })?;
    let mut parts = state
        .broker
        .sign(
            &access,
            &r,
            &[PartRequest {
                part_number: n,
                checksum: None,
            }],
            None,
        )
        .await?;
    let part = parts
        .pop()
        .ok_or_else(|| ApiError::Internal("no URL signed".into()))?;
    // Seconds left until the URL's own expiry.
    let expires = (part.expires_at - chrono::Utc::now()).num_seconds().max(0) as u64;
    Ok(Json(SignedUrl {
        url: part.url,
        expires,
    }))
}

#[utoipa::path(operation_id = "companion_list_parts", get, path = "/multipart/{uploadId}", tag = "companion", security(("bearer" = [])),
    summary = "The parts storage holds, all pages (Companion: listParts)",
    params(("uploadId" = String, Path), KeyQuery),
    responses((status = 200, description = "[{PartNumber, ETag, Size}]", body = Vec<ListedPart>),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody), (status = 409, description = "UPLOAD_NOT_ACTIVE", body = ErrorBody), CallerErrors, UploadErrors, StorageErrors))]
async fn list_parts(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(upload_id): ApiPath<String>,
    q: Q<KeyQuery>,
) -> Result<Json<Vec<ListedPart>>, ApiError> {
    let r = upload_ref(upload_id, query(q)?.key)?;
    let parts = state.broker.list_stored_parts(&access, &r).await?;
    Ok(Json(
        parts
            .into_iter()
            .map(|p| ListedPart {
                part_number: p.part_number,
                etag: p.etag,
                size: p.size,
            })
            .collect(),
    ))
}

#[utoipa::path(operation_id = "companion_complete", post, path = "/multipart/{uploadId}/complete", tag = "companion", security(("bearer" = [])),
    summary = "Complete with the given parts, verified against ListParts (Companion: completeMultipartUpload)",
    params(("uploadId" = String, Path), KeyQuery),
    request_body = CompleteBody,
    responses((status = 200, description = "The finished object", body = Completed),
        BodyErrors,
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "UPLOAD_NOT_ACTIVE, PARTS_MISSING or PART_MISMATCH", body = ErrorBody), CallerErrors, UploadErrors, StorageErrors))]
async fn complete(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(upload_id): ApiPath<String>,
    q: Q<KeyQuery>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<Completed>, ApiError> {
    let r = upload_ref(upload_id, query(q)?.key)?;
    let given: Vec<PartClaim> = body
        .parts
        .into_iter()
        .map(|p| PartClaim {
            part_number: p.part_number,
            etag: Some(p.etag),
            ..Default::default()
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(p) = given.iter().find(|p| !seen.insert(p.part_number)) {
        return Err(ApiError::InvalidRequest(format!(
            "parts: part {} is repeated",
            p.part_number
        )));
    }
    let upload = state
        .broker
        .complete(&access, r, CompleteWith::Given(given))
        .await?;
    Ok(Json(Completed {
        location: state.broker.object_location(&upload),
        key: upload.key.as_str().to_string(),
        bucket: upload.bucket.clone(),
    }))
}

#[utoipa::path(operation_id = "companion_abort", delete, path = "/multipart/{uploadId}", tag = "companion", security(("bearer" = [])),
    summary = "Abort (Companion: abortMultipartUpload)",
    params(("uploadId" = String, Path), KeyQuery),
    responses((status = 200, description = "{}"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody), (status = 409, description = "UPLOAD_NOT_ACTIVE: completed", body = ErrorBody), CallerErrors, UploadErrors))]
async fn abort(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(upload_id): ApiPath<String>,
    q: Q<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = upload_ref(upload_id, query(q)?.key)?;
    state.broker.abort(&access, r).await?;
    Ok(Json(serde_json::json!({})))
}

#[derive(Serialize, ToSchema)]
pub struct PostParams {
    /// Always "POST".
    method: &'static str,
    /// Where to POST the form.
    url: String,
    /// Form fields to send before the file (the file goes last, as `file`).
    fields: BTreeMap<String, String>,
    /// Seconds the policy stays valid.
    expires: u64,
}

#[utoipa::path(operation_id = "companion_params", get, path = "/params", tag = "companion", security(("bearer" = [])),
    summary = "A presigned POST policy for a whole small object (Companion: getUploadParameters)",
    params(("filename" = String, Query), ("type" = Option<String>, Query), ("metadata[name]" = Option<String>, Query, description = "metadata[<field>]=<value>, any number")),
    responses((status = 200, description = "The form to POST to storage", body = PostParams),
        (status = 400, description = "INVALID_REQUEST (also: the provider takes no POST uploads, as R2)", body = ErrorBody), CallerErrors))]
async fn params(
    State(state): State<AppState>,
    Caller(access): Caller,
    q: Q<Vec<(String, String)>>,
) -> Result<Json<PostParams>, ApiError> {
    let pairs = query(q)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let filename = FileName::parse(get("filename").unwrap_or_default())?;
    let content_type = ContentType::parse(get("type").filter(|t| !t.is_empty()))?;
    let metadata = companion_metadata(Some(
        pairs
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                Some((name.to_string(), serde_json::Value::String(v.clone())))
            })
            .collect(),
    ))?;
    let (post, expires) = state
        .broker
        .presign_post(&access, &filename, &content_type, metadata)
        .await?;
    Ok(Json(PostParams {
        method: "POST",
        url: post.url,
        fields: post.fields,
        expires,
    }))
}
