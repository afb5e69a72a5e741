//! The request id on every log line written while a request is served.
//!
//! Every line portico writes while serving a request names the request: in
//! text as the `request{request_id=…}:` prefix, in JSON as a span named
//! `request` under `span` and `spans`. A tracing span per request gave
//! that, at about 2.3k of a proxied request's 42k instructions (callgrind:
//! the span's creation, its fields formatted into the registry, and an
//! enter and an exit at every poll), for lines that are seldom written.
//!
//! Under portico's own formatters ([`Lines`]) the id instead rides along in
//! a task-local ([`within`]), and is written into a line only when a line is
//! written, in the very bytes the span gave. Under any other subscriber (a
//! terminal's colours, someone else's formatter) [`within`] still makes the
//! span.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use futures_util::future::Either;
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;
use tracing::{Event, Instrument as _, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, Full, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::request_id::RequestId;

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

/// `work`, with every line logged while it runs naming the request `id`.
pub fn within<F: Future>(
    id: &RequestId,
    work: F,
) -> Either<TaskLocalFuture<RequestId, F>, Instrumented<F>> {
    if ours() {
        Either::Left(REQUEST_ID.scope(id.clone(), work))
    } else {
        // At ERROR level so the span (and its request id) stays on every
        // line whatever level RUST_LOG lets through: with `warn`, an info
        // span would be filtered out and warnings would lose the request id.
        Either::Right(work.instrument(tracing::error_span!("request", request_id = %id.as_str())))
    }
}

/// Whether the subscriber in charge writes its lines with [`Lines`].
fn ours() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.is::<Lines>())
}

/// portico's line formats: tracing-subscriber's own (text without colours,
/// or JSON with the current span and the span list), plus the request of
/// the task the line is written in.
pub enum Lines {
    /// The text format, its timestamp written here (see [`text`]).
    Text(Format<Full, ()>),
    Json(Format<Json>),
}

impl Lines {
    pub fn text() -> Lines {
        Lines::Text(format().without_time())
    }

    pub fn json() -> Lines {
        Lines::Json(
            format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true),
        )
    }
}

fn format() -> Format<Full> {
    format::Format::default()
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let request = REQUEST_ID.try_with(RequestId::clone).ok();
        let spans = ctx.event_scope().is_some();
        match self {
            Lines::Text(inner) => {
                let mut now = Vec::with_capacity(28);
                super::access_line::timestamp(SystemTime::now(), &mut now);
                writer.write_str(std::str::from_utf8(&now).map_err(|_| fmt::Error)?)?;
                writer.write_char(' ')?;
                let Some(request) = request else {
                    return inner.format_event(ctx, writer, event);
                };
                let mut line = String::new();
                inner.format_event(ctx, Writer::new(&mut line), event)?;
                writer.write_str(&text(&line, request.as_str(), spans))
            }
            Lines::Json(inner) => {
                let Some(request) = request else {
                    return inner.format_event(ctx, writer, event);
                };
                let mut line = String::new();
                inner.format_event(ctx, Writer::new(&mut line), event)?;
                writer.write_str(&json(&line, request.as_str(), spans))
            }
        }
    }
}

/// A text line without its timestamp (`" INFO target: message\n"`, or with
/// the spans it was written in after the level), with the request's span
/// put first, as the span would have been: the outermost.
fn text(line: &str, request_id: &str, other_spans: bool) -> String {
    let levels = ["TRACE ", "DEBUG ", " INFO ", " WARN ", "ERROR "];
    let Some(level) = line.get(..6).filter(|level| levels.contains(level)) else {
        return line.to_owned();
    };
    let mut out = String::with_capacity(line.len() + request_id.len() + 24);
    out.push_str(level);
    out.push_str("request{request_id=");
    out.push_str(request_id);
    out.push_str("}:");
    if !other_spans {
        out.push(' ');
    }
    out.push_str(&line[6..]);
    out
}

/// A JSON line (`{…}` and a newline) with the request's span added: as
/// `span` and `spans` at the end when it was written in no other span, else
/// first in `spans` (`span` is the innermost, which is not the request's).
fn json(line: &str, request_id: &str, other_spans: bool) -> String {
    let mut span = Vec::with_capacity(64);
    super::access_line::json_span(request_id, &mut span);
    let span = String::from_utf8_lossy(&span);
    if other_spans {
        let Some(at) = line.rfind("\"spans\":[").map(|at| at + "\"spans\":[".len()) else {
            return line.to_owned();
        };
        return format!("{}{span},{}", &line[..at], &line[at..]);
    }
    let Some(end) = line.trim_end().strip_suffix('}') else {
        return line.to_owned();
    };
    format!("{end},\"span\":{span},\"spans\":[{span}]}}\n")
}

#[cfg(test)]
#[path = "request_log_tests.rs"]
mod tests;
