//! Log output: text for people, JSON (one object a line) for collectors.
//!
//! Both formats carry the fields of the spans a line was written in, so
//! every line written while serving a request names its `request_id`: in
//! text as the `request{request_id=…}:` prefix, in JSON under `span` and
//! `spans`. The level comes from `RUST_LOG` (default `info`).

use tracing::Subscriber;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::{self, FormatFields};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter from `RUST_LOG`, or `info` for everything but tower-sessions,
/// which warns on every request that carries a stale session cookie (a
/// browser coming back after its session ended) and would flood the log.
pub fn filter_from_environment() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=error,tower_sessions_core=error"))
}

/// A subscriber writing `format` lines that pass `filter` to `writer`
/// (text without colours: use [`init`] for a terminal).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    build(format, filter, writer, false)
}

fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    colours: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text if colours => Box::new(builder.with_ansi(true).finish()),
        LogFormat::Text => Box::new(builder.with_ansi(false).fmt_fields(plain_fields()).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Fields as the default formatter writes them without colours (`name=value`,
/// the message bare, separated by spaces), at a fraction of its cost: the
/// default goes through its colour-styling code even with colours off, and
/// every request's span has its fields formatted once.
fn plain_fields() -> impl for<'writer> FormatFields<'writer> + 'static {
    format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            write!(writer, "{field}={value:?}")
        }
    })
    .delimited(" ")
}

/// Installs the process-wide subscriber writing to standard error.
/// Does nothing if one is installed already.
pub fn init(format: LogFormat) {
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = build(format, filter_from_environment(), std::io::stderr, colours);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
