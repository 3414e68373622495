//! Webhook endpoints, their deliveries, and the event feed (API keys only).

use super::extract::{ApiJson, ApiPath};
use super::openapi::{BodyErrors, CallerErrors, ErrorBody};
use super::resources::rfc3339;
use super::AppState;
use crate::db::{DeliveryRow, WebhookRow};
use crate::domain::event::{event_id, Event, EventType};
use crate::error::ApiError;
use crate::events::webhook_id;
use crate::http::auth::Caller;
use axum::extract::{Query, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
        .routes(routes!(feed))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookBody {
    /// Where deliveries are POSTed: an absolute http(s) URL.
    url: String,
    /// The event types to deliver (default: all).
    event_types: Option<Vec<String>>,
}

/// A webhook endpoint (its secret is shown only when it is created).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WebhookResource {
    /// `wh_…`
    id: String,
    url: String,
    event_types: Vec<String>,
    created_at: String,
}

impl From<WebhookRow> for WebhookResource {
    fn from(w: WebhookRow) -> Self {
        Self {
            id: webhook_id(w.id),
            url: w.url,
            event_types: w.event_types.unwrap_or_else(|| {
                EventType::ALL
                    .iter()
                    .map(|t| t.as_str().to_string())
                    .collect()
            }),
            created_at: rfc3339(&w.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookResource,
    /// `whsec_…`: the signing secret, shown only here.
    secret: String,
}

#[derive(Serialize, ToSchema)]
struct WebhookList {
    webhooks: Vec<WebhookResource>,
}

#[utoipa::path(post, path = "/v1/webhooks", security(("bearer" = [])), tag = "events",
    summary = "Add a webhook endpoint",
    description = "Status changes of the tenant's uploads are POSTed to `url`, signed as Standard Webhooks has it with the secret returned here (and never again).",
    request_body = WebhookBody,
    responses((status = 201, description = "The endpoint and its secret", body = CreatedWebhook),
        (status = 403, description = "FORBIDDEN: grants cannot manage webhooks", body = ErrorBody), CallerErrors, BodyErrors))]
async fn create_webhook(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let (row, secret) = state
        .events
        .create_webhook(&access, &body.url, body.event_types)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: row.into(),
            secret: secret.expose(),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/webhooks", security(("bearer" = [])), tag = "events",
    summary = "List the webhook endpoints",
    responses((status = 200, description = "The tenant's endpoints, without secrets", body = WebhookList),
        (status = 403, description = "FORBIDDEN: grants cannot manage webhooks", body = ErrorBody), CallerErrors))]
async fn list_webhooks(
    State(state): State<AppState>,
    Caller(access): Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let rows = state.events.list_webhooks(&access).await?;
    Ok(Json(WebhookList {
        webhooks: rows.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", params(("id" = String, Path, description = "The endpoint's id (`wh_…`)")),
    security(("bearer" = [])), tag = "events",
    summary = "Remove a webhook endpoint",
    responses((status = 204, description = "Removed, with its pending deliveries"),
        (status = 403, description = "FORBIDDEN: grants cannot manage webhooks", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such endpoint of this tenant", body = ErrorBody), CallerErrors))]
async fn delete_webhook(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.events.delete_webhook(&access, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One event's delivery to one endpoint.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryResource {
    /// The event (`evt_…`), the `webhook-id` of its requests.
    event_id: String,
    event_type: String,
    /// The upload the event is about.
    upload: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: i32,
    /// When it is tried next (pending only).
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    /// The receiver's last HTTP status, if it answered.
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<String>,
    /// When the event happened.
    event_at: String,
}

impl From<DeliveryRow> for DeliveryResource {
    fn from(d: DeliveryRow) -> Self {
        Self {
            event_id: event_id(d.event_id),
            event_type: d.kind,
            upload: d.upload_id.to_string(),
            next_attempt_at: (d.status == "pending").then(|| rfc3339(&d.next_attempt_at)),
            status: d.status,
            attempts: d.attempts,
            last_attempt_at: d.last_attempt_at.as_ref().map(rfc3339),
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at.as_ref().map(rfc3339),
            event_at: rfc3339(&d.event_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct DeliveryList {
    deliveries: Vec<DeliveryResource>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    /// `pending`, `delivered` or `failed` (default: all).
    status: Option<String>,
    /// Most deliveries listed, 1 to 1000 (default 100), oldest event first.
    limit: Option<i64>,
}

fn limit(n: Option<i64>) -> Result<i64, ApiError> {
    let n = n.unwrap_or(crate::events::DEFAULT_FEED_LIMIT);
    if (1..=crate::events::MAX_FEED_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "limit: must be 1 to {}",
            crate::events::MAX_FEED_LIMIT
        )))
    }
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError::InvalidRequest(e.body_text().replace(
            "Failed to deserialize query string: ",
            "the query string is malformed: ",
        ))
    })
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", params(("id" = String, Path, description = "The endpoint's id (`wh_…`)"), DeliveryQuery),
    security(("bearer" = [])), tag = "events",
    summary = "List an endpoint's deliveries",
    description = "`?status=failed` lists the deliveries that were given up on (retry them one by one).",
    responses((status = 200, description = "The deliveries, oldest event first", body = DeliveryList),
        (status = 400, description = "INVALID_REQUEST: unknown status or bad limit", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: grants cannot manage webhooks", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such endpoint of this tenant", body = ErrorBody), CallerErrors))]
async fn list_deliveries(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let q = query(q)?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "pending" | "delivered" | "failed") {
            return Err(ApiError::InvalidRequest(
                "status: must be pending, delivered or failed".into(),
            ));
        }
    }
    let rows = state
        .events
        .deliveries(&access, &id, q.status.as_deref(), limit(q.limit)?)
        .await?;
    Ok(Json(DeliveryList {
        deliveries: rows.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{eventId}/retry",
    params(("id" = String, Path, description = "The endpoint's id (`wh_…`)"), ("eventId" = String, Path, description = "The event's id (`evt_…`)")),
    security(("bearer" = [])), tag = "events",
    summary = "Send one delivery again",
    description = "Makes the delivery due now (a failed one gets one more attempt, and the usual retries within the window).",
    responses((status = 202, description = "Due now", body = DeliveryResource),
        (status = 403, description = "FORBIDDEN: grants cannot manage webhooks", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such endpoint, or no delivery of that event to it", body = ErrorBody), CallerErrors))]
async fn retry_delivery(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiPath((id, event)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryResource>), ApiError> {
    let row = state.events.retry(&access, &id, &event).await?;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// An event (schema of the feed and of webhook bodies).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // describes crate::domain::event::Event in the document
struct EventResource {
    /// `evt_…`: unique, the same in every delivery (`webhook-id`).
    id: String,
    /// `upload.created`, `upload.completed`, `upload.aborted` or `upload.expired`.
    #[serde(rename = "type")]
    kind: String,
    timestamp: String,
    /// The upload resource without `resumeToken`, with `subject` and `metadata`;
    /// completed uploads add `etag`, `objectSize` and `checksum`.
    data: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct FeedResponse {
    #[schema(value_type = Vec<EventResource>)]
    events: Vec<Event>,
    /// The cursor to pass as `after` for the next page (the same one when
    /// nothing new has happened).
    next: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// A `next` from an earlier page (default: from the oldest event kept).
    after: Option<String>,
    /// Most events returned, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/events", params(FeedQuery), security(("bearer" = [])), tag = "events",
    summary = "Poll the event feed",
    description = "The tenant's events, oldest first: the same stream as the webhooks, for backends that cannot receive them. An event shows up once every transaction that started before it has ended, so a cursor never passes an event that commits late.",
    responses((status = 200, description = "A page of events and the next cursor", body = FeedResponse),
        (status = 400, description = "INVALID_REQUEST: a cursor this feed did not give, or a bad limit", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: grants cannot read the feed", body = ErrorBody), CallerErrors))]
async fn feed(
    State(state): State<AppState>,
    Caller(access): Caller,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FeedResponse>, ApiError> {
    let q = query(q)?;
    let page = state
        .events
        .feed(&access, q.after.as_deref(), Some(limit(q.limit)?))
        .await?;
    Ok(Json(FeedResponse {
        events: page.events,
        next: page.next,
    }))
}
