//! Health and readiness for orchestrators.
//!
//! `/healthz`: the process answers. `/readyz`: it can serve sign-ins, meaning
//! provider metadata is loaded and the session store answers.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let provider = app.provider.get().is_some();
    let store = app.sessions.backend().is_reachable().await;
    let status = if provider && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": provider && store,
        "provider_metadata": provider,
        "session_store": store,
    });
    (status, Json(body)).into_response()
}
