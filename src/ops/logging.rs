//! Log output: text for people, JSON (one object a line) for collectors.
//!
//! Both formats carry the fields of the spans a line was written in, so
//! every line written while serving a request names its `request_id`: in
//! text as the `request{request_id=…}:` prefix, in JSON under `span` and
//! `spans`. The level comes from `RUST_LOG` (default `info`).

use tracing::Subscriber;
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
    PlainFields
}

struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            seen: false,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'writer> {
    writer: format::Writer<'writer>,
    seen: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for PlainVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        // The name and the separators are written as they are; only the
        // value goes through the formatting machinery.
        self.result = (|| {
            if self.seen {
                self.writer.write_char(' ')?;
            }
            self.seen = true;
            if field.name() != "message" {
                self.writer.write_str(field.name())?;
                self.writer.write_char('=')?;
            }
            write!(self.writer, "{value:?}")
        })();
    }
}

/// Installs the process-wide subscriber writing to standard error.
/// Does nothing if one is installed already.
pub fn init(format: LogFormat) {
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let subscriber = build(format, filter_from_environment(), std::io::stderr, colours);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::field::MakeExt as _;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit() {
        let span = tracing::error_span!("request", request_id = %"4f2a9c", n = 3);
        let _entered = span.enter();
        tracing::warn!(
            reason = "expired",
            count = 7,
            ok = true,
            "bearer token refused"
        );
        tracing::error!(error = %std::io::Error::other("boom"), path = ?"/a b", "upstream failed");
        tracing::warn!("bare message");
        tracing::warn!(only = 1.5);
    }

    fn lines_with<F>(fields: F) -> String
    where
        F: for<'writer> FormatFields<'writer> + Send + Sync + 'static,
    {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn plain_fields_write_what_the_field_formatter_they_replace_wrote() {
        // The formatter this one replaced, kept here as the reference.
        let reference = format::debug_fn(|writer, field, value| {
            if field.name() == "message" {
                write!(writer, "{value:?}")
            } else {
                write!(writer, "{field}={value:?}")
            }
        })
        .delimited(" ");
        let expected = lines_with(reference);
        let actual = lines_with(PlainFields);
        assert_eq!(actual, expected);
        assert!(
            actual.contains(r#"request{request_id=4f2a9c n=3}: "#),
            "{actual}"
        );
        assert!(
            actual.contains(r#"bearer token refused reason="expired" count=7 ok=true"#),
            "{actual}"
        );
        assert_eq!(actual.lines().count(), 4, "{actual}");
    }
}
