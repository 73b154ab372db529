//! Every route Tether serves, in one table: each front door's handlers
//! (from [`crate::doors`]) plus CORS, health and metrics.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tether_core::{ErrorCode, ErrorInfo};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::doors::caller::{CLIENT_ID_HEADER, Caller};
use crate::doors::{aisdk, llm, rest, sse, ws};
use crate::error::ApiError;
use crate::protocol::ErrorBody;
use crate::state::App;
use tether_core::capability::Operation;

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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/channels/{channel}/llm", post(llm::start))
        .route("/channels/{channel}/aisdk/stream", get(aisdk::stream))
        .route("/llm/jobs", get(llm::list))
        .route("/llm/jobs/{job}", delete(llm::cancel))
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

/// 200 `ready`, or 503 with `{"error": {"code", "message"}}` saying why not:
/// shutting down, or the store refusing writes (a full disk: code 50700;
/// reads are still served, but a load balancer should send writers
/// elsewhere).
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
