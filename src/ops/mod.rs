//! Operating portico: health and readiness, metrics, the access log, log
//! formats, and the process lifecycle (graceful shutdown, reload on SIGHUP).
//!
//! `/healthz`: the process answers. `/readyz`: it can serve sign-ins, meaning
//! provider metadata is loaded, the session store answers, and it is not
//! shutting down. `/metrics`: Prometheus (OpenMetrics) text.

pub mod access;
pub mod access_line;
pub mod health;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod request_log;
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

/// What `/readyz` reports: ready when the provider's metadata is loaded,
/// the session store answers, and no shutdown has begun.
struct Readiness {
    provider: bool,
    store: bool,
    draining: bool,
}

impl Readiness {
    async fn of(app: &AppState) -> Self {
        Readiness {
            draining: app.draining.is_draining(),
            provider: app.provider.get().is_some(),
            store: app.sessions.backend().is_reachable().await,
        }
    }

    fn ready(&self) -> bool {
        self.provider && self.store && !self.draining
    }
}

pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let readiness = Readiness::of(&app).await;
    let ready = readiness.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready,
        "provider_metadata": readiness.provider,
        "session_store": readiness.store,
        "shutting_down": readiness.draining,
    });
    (status, Json(body)).into_response()
}

/// The metrics, with `portico_ready` judged as `/readyz` would at this
/// scrape (alerts see a replica Prometheus reaches but that cannot serve).
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    app.metrics.set_ready(Readiness::of(&app).await.ready());
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

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn ready_only_with_provider_and_store_and_not_draining() {
        let ready = |provider, store, draining| {
            Readiness {
                provider,
                store,
                draining,
            }
            .ready()
        };
        assert!(ready(true, true, false));
        assert!(!ready(false, true, false), "provider metadata missing");
        assert!(!ready(true, false, false), "session store down");
        assert!(!ready(true, true, true), "shutting down");
    }
}
