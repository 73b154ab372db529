//! Every route Tether serves, in one table: each front door's handlers
//! (from [`crate::doors`]) plus CORS, health, metrics and the API's own
//! description (`GET /openapi.json`, generated from the handlers'
//! `#[utoipa::path]` annotations and the protocol's body types;
//! `tests/openapi.rs` fails when a route here is missing from it).

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tether_core::{ErrorCode, ErrorInfo};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::doors::caller::schemes::CredentialSchemes;
use crate::doors::caller::{CLIENT_ID_HEADER, Caller};
use crate::doors::{aisdk, llm, rest, sse, ws};
use crate::error::ApiError;
use crate::protocol::ErrorBody;
use crate::state::App;
use tether_core::capability::Operation;
use utoipa::OpenApi;

/// Every route Tether serves.
pub(crate) fn router(app: App) -> Router {
    let cors = cors_layer(&app.config.cors_origins);
    let body_limit = app.config.max_frame_bytes;
    let mut router = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/channels/{channel}", get(rest::channel_info))
        .route("/channels/{channel}/stream", get(sse::stream))
        .route("/channels/{channel}/presence", get(rest::presence))
        .route(
            "/channels/{channel}/messages",
            get(rest::history).post(rest::publish),
        )
        .route(
            "/channels/{channel}/messages/{serial}",
            get(rest::get_message)
                .patch(rest::update)
                .delete(rest::delete),
        )
        .route(
            "/channels/{channel}/messages/{serial}/append",
            post(rest::append),
        )
        .route(
            "/channels/{channel}/messages/{serial}/versions",
            get(rest::versions),
        )
        .route("/keys/{key}/tokens", post(rest::mint_token))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/channels/{channel}/llm", post(llm::start))
        .route("/channels/{channel}/aisdk/stream", get(aisdk::stream))
        .route("/llm/jobs", get(llm::list))
        .route("/llm/jobs/{job}", delete(llm::cancel))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError(ErrorInfo::new(ErrorCode::NotFound, "no such route")) })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app);
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    router
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            // Listed, not `*`: browsers never let a wildcard cover
            // `Authorization`, which would push tokens into URLs.
            .allow_headers(allowed_headers())
            .expose_headers(Any),
    )
}

/// The request headers browsers may send cross-origin: the credential,
/// JSON bodies, the key holder's client id and the SSE resume position.
pub(crate) fn allowed_headers() -> [HeaderName; 4] {
    [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        HeaderName::from_static(CLIENT_ID_HEADER),
        HeaderName::from_static("last-event-id"),
    ]
}

/// The description of every route (`/openapi.json`). Its paths come from
/// each handler's annotation; every schema a body or parameter names is
/// collected from there, and the credential schemes from
/// [`CredentialSchemes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tether",
        description = "A realtime transport for AI applications: channels as durable, ordered logs, \
            over WebSocket (`/ws`), Server-Sent Events and REST. Wire format: docs/protocol.md; \
            error codes: docs/errors.md.",
    ),
    paths(
        ws::upgrade,
        rest::channel_info,
        sse::stream,
        rest::presence,
        rest::history,
        rest::publish,
        rest::get_message,
        rest::update,
        rest::delete,
        rest::append,
        rest::versions,
        rest::mint_token,
        healthz,
        readyz,
        metrics,
        llm::start,
        aisdk::stream,
        llm::list,
        llm::cancel,
        openapi_json,
    ),
    // Query parameters' schemas are not collected from the handlers.
    components(schemas(crate::doors::openapi::Direction)),
    modifiers(&CredentialSchemes),
    security(("bearer" = []), ("basic" = []), ("token" = []), ("key" = [])),
    tags(
        (name = "messages", description = "Publish, stream into, edit, delete and read messages."),
        (name = "channels", description = "A channel's log bounds."),
        (name = "presence", description = "Who is on a channel."),
        (name = "streams", description = "A channel as Server-Sent Events."),
        (name = "connections", description = "The WebSocket protocol."),
        (name = "tokens", description = "Tokens for browsers and devices, minted by a key holder."),
        (name = "llm", description = "The server-side LLM bridge."),
        (name = "operations", description = "Health, readiness, metrics and this description."),
    )
)]
struct ApiDoc;

/// `GET /openapi.json`: built once (it depends on no configuration, so it
/// is the same with `--dev` and with keys) and public, like `/healthz`, so
/// tools can read it before they hold a credential.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// `GET /healthz`: the process is up (no credential, no store check).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// 200 `ready`, or 503 with `{"error": {"code", "message"}}` saying why not:
/// shutting down, or the store refusing writes (a full disk: code 50700;
/// reads are still served, but a load balancer should send writers
/// elsewhere).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "Shutting down (50301) or the store refuses writes (50700).", body = tether_protocol::ErrorBody),
    )
)]
async fn readyz(State(app): State<App>) -> Response {
    if *app.shutdown.borrow() {
        return ApiError(ErrorInfo::new(ErrorCode::ShuttingDown, "shutting down")).into_response();
    }
    if let tether_store::StoreHealth::NotReady { code, reason } = app.engine.store_health() {
        let body = ErrorBody {
            error: ErrorInfo::new(code, format!("the store refuses writes: {reason}")),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    "ready".into_response()
}

/// `GET /metrics`: Prometheus text, for a credential with `stats`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus exposition format.", content_type = "text/plain", body = String),
        (status = "4XX", description = "No credential, or no `stats` capability.", body = tether_protocol::ErrorBody),
        (status = 500, description = "Metrics are not available in this process.", body = tether_protocol::ErrorBody),
    )
)]
async fn metrics(State(app): State<App>, Caller(caller): Caller) -> Response {
    if !caller.capabilities.allows_anywhere(Operation::Stats)
        || !caller.ceiling.allows_anywhere(Operation::Stats)
    {
        return ApiError(ErrorInfo::new(
            ErrorCode::Forbidden,
            "reading metrics needs the stats capability",
        ))
        .into_response();
    }
    metrics::gauge!("tether_active_channels").set(app.engine.fanout().active_channels() as f64);
    match &app.metrics {
        Some(handle) => handle.render().into_response(),
        None => ApiError(ErrorInfo::new(
            ErrorCode::Internal,
            "metrics are not available",
        ))
        .into_response(),
    }
}
