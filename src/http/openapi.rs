//! The OpenAPI 3.1 document, generated from the code: the handlers' own
//! annotations (registered with their routes by utoipa-axum) and the types
//! they read and write.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: `{"error": {"code", "message", …}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// PARTS_MISSING (and PART_MISMATCH for wrong sizes): the parts to upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_parts: Option<Vec<u32>>,
    /// UPLOAD_NOT_ACTIVE: the upload's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// QUOTA_EXCEEDED: which quota (`tenantActiveUploads`, `tenantActiveBytes`,
    /// `subjectActiveUploads` or `grantUploads`), its limit and the current count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
}

pub use crate::error::ErrorCode;

/// What any API call may answer besides its own responses (one place for
/// every route's common error rows).
#[derive(utoipa::IntoResponses)]
pub enum CallerErrors {
    /// UNAUTHORIZED: no, unknown or expired credential
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// RATE_LIMITED: too many requests from this grant subject or key (Retry-After)
    #[response(status = 429)]
    RateLimited(#[to_schema] ErrorBody),
    /// REQUEST_TIMEOUT: the request took longer than the server allows
    #[response(status = 408)]
    Timeout(#[to_schema] ErrorBody),
    /// UNAVAILABLE: the database is unreachable, or too many requests in flight
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}

/// What a route that names an upload may answer.
#[derive(utoipa::IntoResponses)]
pub enum UploadErrors {
    /// NOT_FOUND: unknown upload, or one the credential may not see
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
    /// UPLOAD_EXPIRED: past expiresAt, or the provider no longer has the upload
    #[response(status = 410)]
    Expired(#[to_schema] ErrorBody),
}

/// What a route that reads a JSON body may answer.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    /// INVALID_REQUEST: malformed JSON or an invalid field
    #[response(status = 400)]
    Invalid(#[to_schema] ErrorBody),
    /// BODY_TOO_LARGE (the request body is over the limit) or TOO_LARGE (size over the maximum)
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// UNSUPPORTED_MEDIA_TYPE: the body is not application/json
    #[response(status = 415)]
    UnsupportedMediaType(#[to_schema] ErrorBody),
}

/// What a route that calls the storage provider may answer.
#[derive(utoipa::IntoResponses)]
pub enum StorageErrors {
    /// STORAGE_ERROR: the storage provider failed or refused
    #[response(status = 502)]
    Storage(#[to_schema] ErrorBody),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "upload-broker",
        description = "Resumable, direct-to-storage multipart uploads to S3 and Cloudflare R2. Reference: docs/api.md in the repository.",
        version = "1"
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&BearerAuth),
    tags(
        (name = "uploads", description = "The native API (bearer credential required)"),
        (name = "credentials", description = "Upload grants for browsers and apps (API key required)"),
        (name = "events", description = "Webhooks and the event feed: every status change of an upload (API key required)"),
        (name = "operations", description = "Health, readiness and metrics (no credential)"),
        (name = "companion", description = "Uppy Companion-compatible S3 multipart routes (bearer credential required)")
    )
)]
pub struct ApiDoc;

/// The whole document, as served at `/openapi.json` with the default
/// Companion mount.
pub fn document() -> utoipa::openapi::OpenApi {
    super::parts(Some(crate::config::DEFAULT_COMPANION_MOUNT)).3
}

/// OpenAPI links from the operations that create a resource to those that
/// take it (create → the token routes, Companion create → its upload routes,
/// webhook → its deliveries): they tell readers and tools such as the fuzzer's
/// stateful phase (`scripts/fuzz.sh`) where each value comes from.
pub fn add_links(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    // (path, method, status, operations it leads to, their parameters and where they come from)
    type From<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
    );
    let from: [From; 3] = [
        (
            "/v1/uploads",
            "post",
            "201",
            &["status", "sign", "resume", "complete", "download", "abort"],
            &[("token", "$response.body#/resumeToken")],
        ),
        (
            "/s3/multipart",
            "post",
            "200",
            &[
                "companion_sign_one",
                "companion_sign_batch",
                "companion_list_parts",
                "companion_complete",
                "companion_abort",
            ],
            &[
                ("uploadId", "$response.body#/uploadId"),
                ("key", "$response.body#/key"),
            ],
        ),
        (
            "/v1/webhooks",
            "post",
            "201",
            &["list_deliveries", "delete_webhook"],
            &[("id", "$response.body#/id")],
        ),
    ];
    for (path, method, status, targets, parameters) in from {
        // The Companion routes sit under a configurable mount.
        let Some(item) = doc
            .paths
            .paths
            .iter_mut()
            .find(|(p, _)| p.ends_with(path))
            .map(|(_, item)| item)
        else {
            continue;
        };
        let operation = match method {
            "post" => item.post.as_mut(),
            _ => None,
        };
        let Some(response) = operation.and_then(|o| o.responses.responses.get_mut(status)) else {
            continue;
        };
        let utoipa::openapi::RefOr::T(response) = response else {
            continue;
        };
        for target in targets {
            let mut link = LinkBuilder::new().operation_id(*target);
            for (name, value) in parameters {
                link = link.parameter(*name, *value);
            }
            response
                .links
                .insert(target.to_string(), utoipa::openapi::RefOr::T(link.build()));
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every link names an operation of the document, with parameters it takes.
    #[test]
    fn links_lead_to_operations_that_take_their_parameters() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let mut operations = std::collections::HashMap::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    let params: Vec<String> = op["parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| p["name"].as_str().unwrap().to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    operations.insert(id.to_string(), params);
                }
            }
        }
        let mut links = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for response in responses.values() {
                    let Some(ls) = response["links"].as_object() else {
                        continue;
                    };
                    for link in ls.values() {
                        let target = link["operationId"].as_str().unwrap();
                        let takes = operations
                            .get(target)
                            .unwrap_or_else(|| panic!("a link to {target}, which does not exist"));
                        for name in link["parameters"].as_object().unwrap().keys() {
                            assert!(takes.contains(name), "{target} takes no parameter {name}");
                        }
                        links += 1;
                    }
                }
            }
        }
        assert_eq!(links, 6 + 5 + 2);
    }
}
