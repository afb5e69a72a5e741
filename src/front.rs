//! What every request passes first, in one middleware: its request id (and
//! the tracing span carrying it), the size limits, and, once answered, its
//! metrics and access log line.
//!
//! One layer rather than three: each axum middleware layer boxes the rest
//! of the request's future again, which the benchmark's profile showed as a
//! fifth of a proxied request's instructions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::ops::access::Observation;
use crate::{limits, request_id, AppState};

pub async fn front(State(app): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let id = request_id::choose(&app, &request);
    request.extensions_mut().insert(id.clone());
    let observation = Observation::begin(&mut request);
    // At ERROR level so the span (and its request id) stays on every line
    // whatever level RUST_LOG lets through: with `warn`, an info span would
    // be filtered out and warnings would lose the request id.
    let span = tracing::error_span!("request", request_id = %id.as_str());
    let mut response = async {
        let response = limits::enforce(&app, request, next).await;
        observation.finish(&app, &response);
        response
    }
    .instrument(span)
    .await;
    request_id::answer_with(&mut response, &id);
    response
}
