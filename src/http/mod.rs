//! The HTTP layer: one state, one router per resource, merged here, with the
//! request id, tracing, CORS and body limit around them.

pub mod auth;
pub mod companion;
pub mod disposition;
pub mod events;
pub mod extract;
pub mod grants;
pub mod health;
pub mod metrics_route;
pub mod openapi;
pub mod resources;
pub mod serve;
pub mod uploads;

use crate::broker::Broker;
use crate::error::ApiError;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::{header, HeaderValue, Method};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub broker: Broker,
    pub auth: Arc<crate::auth::Authenticator>,
    /// Webhook endpoints, deliveries and the event feed.
    pub events: crate::events::Events,
    /// The bearer token `/metrics` asks for, if one is configured.
    pub metrics_token: Option<Arc<crate::config::Secret<String>>>,
    /// Set once a shutdown began: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// HTTP settings that shape the router.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    /// Longest a request may take (408 after).
    pub request_timeout: Duration,
    /// Most API requests in flight at once (503 beyond).
    pub max_concurrent_requests: usize,
    /// Serve `/metrics` here (otherwise on `METRICS_LISTEN`).
    pub metrics_on_main_port: bool,
    /// Where the Companion-compatible routes are mounted (`None`: not served).
    pub companion_mount: Option<String>,
}

/// Counts and times every request by its route template.
async fn record_metrics(req: Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    crate::metrics::http_request(&method, &route, res.status().as_u16(), start.elapsed());
    res
}

/// Internal detail of a failed request, for the log only.
#[derive(Clone)]
struct ErrorDetail(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = (status, Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after } = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status.is_server_error() {
            res.extensions_mut().insert(ErrorDetail(format!("{self}")));
        }
        res
    }
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

/// The routers of the API, health and metrics, and the OpenAPI document they
/// were declared with.
fn parts(
    companion_mount: Option<&str>,
) -> (
    Router<AppState>,
    Router<AppState>,
    Router<AppState>,
    utoipa::openapi::OpenApi,
) {
    use utoipa::OpenApi as _;
    let mut api = utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(uploads::router())
        .merge(grants::router())
        .merge(events::router());
    if let Some(mount) = companion_mount {
        api = api.nest(mount, companion::router());
    }
    let (api, mut doc) = api.split_for_parts();
    let (health, health_doc) = health::router().split_for_parts();
    let (metrics, metrics_doc) = metrics_route::router().split_for_parts();
    doc.merge(health_doc);
    doc.merge(metrics_doc);
    openapi::add_links(&mut doc);
    (api, health, metrics, doc)
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            // The route template, never the raw path: it holds the resume token.
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "unmatched".into());
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                request_id,
                tenant = tracing::field::Empty,
                upload_id = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(|res: &Response, latency: Duration, _span: &Span| {
            let status = res.status().as_u16();
            let ms = latency.as_secs_f64() * 1000.0;
            match res.extensions().get::<ErrorDetail>() {
                Some(ErrorDetail(detail)) => {
                    tracing::error!(status, latency_ms = ms, error = %detail, "request failed")
                }
                None => tracing::info!(status, latency_ms = ms, "request"),
            }
        })
        .on_failure(());

    // The API is limited (time, concurrency); health checks are not, so that an
    // overloaded instance still answers its orchestrator.
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limit_error))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            settings.max_concurrent_requests,
        ))
        .layer(tower::timeout::TimeoutLayer::new(settings.request_timeout));
    let (api, health, metrics, doc) = parts(settings.companion_mount.as_deref());
    let doc_json = std::sync::Arc::new(doc.to_pretty_json().expect("the document serializes"));
    let api = api
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(limits);
    let mut router = Router::new()
        .merge(health)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .merge(api);
    if settings.metrics_on_main_port {
        router = router.merge(metrics);
    }
    router
        .layer(axum::middleware::from_fn(record_metrics))
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(cors(&settings.cors_origins)),
        )
}

async fn limit_error(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded("too many requests in flight; try again shortly")
    } else {
        ApiError::Internal(format!("middleware: {err}"))
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    if origins.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        // Browsers may read these: the request id, and how long to wait on a 429.
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}
