//! Operating portico: health and readiness, metrics, the access log, log
//! formats, and the process lifecycle (graceful shutdown, reload on SIGHUP).
//!
//! `/healthz`: the process answers. `/readyz`: it can serve sign-ins, meaning
//! provider metadata is loaded, the session store answers, and it is not
//! shutting down. `/metrics`: Prometheus (OpenMetrics) text.

pub mod access;
pub mod health;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod setup;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};

pub use access::AccessNote;
pub use lifecycle::{reload_routes, Draining, ReloadError, RouteHandle};
pub use metrics::Metrics;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let draining = app.draining.is_draining();
    let provider = app.provider.get().is_some();
    let store = app.sessions.backend().is_reachable().await;
    let ready = provider && store && !draining;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready,
        "provider_metadata": provider,
        "session_store": store,
        "shutting_down": draining,
    });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let mut response = app.metrics.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// Counts back-channel logouts by what the endpoint answered: "ended"
/// (200), "unavailable" (503: provider or store) or "refused" (anything else).
pub async fn count_backchannel_logout(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let outcome = match response.status() {
        status if status.is_success() => "ended",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "refused",
    };
    app.metrics.backchannel_logout(outcome);
    response
}
