//! Log output: text for people, JSON (one object a line) for collectors.
//!
//! Both formats carry the fields of the spans a line was written in, and
//! every line written while serving a request names its `request_id`: in
//! text as the `request{request_id=…}:` prefix, in JSON under `span` and
//! `spans` (see [`super::request_log`]). The level comes from `RUST_LOG`
//! (default `info`).

use tracing::Subscriber;
use tracing_subscriber::fmt::format::{self, FormatFields};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use super::request_log::Lines;
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
        LogFormat::Text => Box::new(
            builder
                .with_ansi(false)
                .fmt_fields(plain_fields())
                .event_format(Lines::text())
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .fmt_fields(format::JsonFields::new())
                .event_format(Lines::json())
                .finish(),
        ),
    }
}

/// Fields as the default formatter writes them without colours (`name=value`,
/// the message bare, separated by spaces), at a fraction of its cost: the
/// default goes through its colour-styling code even with colours off, and
/// every request's span has its fields formatted once.
pub(super) fn plain_fields() -> impl for<'writer> FormatFields<'writer> + 'static {
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
    let writer = MakeStderr {
        access: access_log_for(format, colours, &filter_from_environment()),
    };
    let subscriber = build(format, filter_from_environment(), writer, colours);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// How a request's access line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// Not at all: the filter drops `portico::access` at info.
    Off,
    /// Directly ([`write_line`]), in this format.
    Direct(LogFormat),
    /// Through `tracing`, which asks the filter on every request.
    Tracing,
}

/// How [`init`]'s subscriber has the access line written, decided once:
/// directly unless in colour (only the fmt layer writes those), and not at
/// all when `filter` drops it. The filter is fixed for the process's life
/// (`RUST_LOG` is read at start-up), and outside any span, where an access
/// line's fate is decided, its answer for the line's target and level is
/// the same every time.
fn access_log_for(format: LogFormat, colours: bool, filter: &EnvFilter) -> AccessLog {
    if colours {
        return AccessLog::Tracing;
    }
    let probe = tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        filter.clone(),
    );
    let on = tracing::subscriber::with_default(
        probe,
        || tracing::enabled!(target: "portico::access", tracing::Level::INFO),
    );
    if on {
        AccessLog::Direct(format)
    } else {
        AccessLog::Off
    }
}

/// The writer [`init`] gives the fmt layer: [`Stderr`], and how the access
/// line is written under that subscriber.
#[derive(Clone, Copy, Debug)]
pub struct MakeStderr {
    access: AccessLog,
}

impl<'writer> MakeWriter<'writer> for MakeStderr {
    type Writer = Stderr;

    fn make_writer(&'writer self) -> Stderr {
        Stderr
    }
}

/// How the subscriber in charge of this thread has the access line written:
/// as [`init`] decided if it is [`init`]'s (the fmt layer hands out its
/// writer by type), through `tracing` under any other (a test's capture).
/// With one process-wide subscriber this is an atomic load and a few
/// type-id comparisons, where asking the filter (`tracing::enabled!`) costs
/// about 170 instructions a request (callgrind).
pub fn access_log() -> AccessLog {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<MakeStderr>()
            .map_or(AccessLog::Tracing, |writer| writer.access)
    })
}

/// Writes the line `write` appends to a buffer: on a batching thread
/// straight into its batch (see [`Stderr`]), elsewhere at once.
pub fn write_line(write: impl FnOnce(&mut Vec<u8>)) {
    let mut write = Some(write);
    PENDING.with(|pending| {
        let Ok(mut pending) = pending.try_borrow_mut() else {
            return;
        };
        let Some(batch) = pending.as_mut() else {
            return;
        };
        let Some(write) = write.take() else {
            return;
        };
        let start = batch.len();
        write(batch);
        settle(batch, start, &mut std::io::stderr());
    });
    if let Some(write) = write {
        let mut line = Vec::with_capacity(256);
        write(&mut line);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), &line);
    }
}

/// After a line was appended to `batch` at `start`: as [`add_line`], the
/// lines before it go out first if it took the batch over
/// [`BATCH_BYTES`], and a line longer than a batch goes out alone.
fn settle(batch: &mut Vec<u8>, start: usize, out: &mut impl std::io::Write) {
    if batch.len() <= BATCH_BYTES {
        return;
    }
    if start > 0 {
        let _ = out.write_all(&batch[..start]);
        batch.drain(..start);
    }
    if batch.len() > BATCH_BYTES {
        write_to(batch, out);
    }
}

/// The most bytes of whole lines one write to standard error carries: Linux's
/// `PIPE_BUF`, so a batch written to a pipe (a container runtime's log
/// collector) arrives whole, never interleaved with another thread's lines.
pub const BATCH_BYTES: usize = 4096;

thread_local! {
    /// The lines a batching thread has formatted and not yet written.
    static PENDING: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Standard error, batched on the threads that ask for it.
///
/// The per-core workers (`front::serve_workers`) each write an access line per
/// request. Written one by one, that is a `write(2)` per request, and the two
/// workers take turns at the same stderr lock and file: a worker preempted
/// while it holds either stalls the other one, with every request it has in
/// flight, for a scheduler time slice (measured: docs/benchmarks.md, "Where
/// the tail comes from"). A worker instead collects whole lines and writes
/// them when it runs out of work (`flush_this_thread`, from its runtime's
/// park hook) or when the next line would take the batch over
/// [`BATCH_BYTES`]; an idle gateway's lines go out at once. Other threads
/// write each line as it comes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let batched = PENDING.with(|pending| {
            let Ok(mut pending) = pending.try_borrow_mut() else {
                return false;
            };
            let Some(batch) = pending.as_mut() else {
                return false;
            };
            add_line(batch, bytes, &mut std::io::stderr())
        });
        if !batched {
            std::io::stderr().write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Adds `line` to `batch`, first writing the batch to `out` when the line
/// would take it over [`BATCH_BYTES`]. A line longer than a batch is not
/// kept (false): the caller writes it alone.
fn add_line(batch: &mut Vec<u8>, line: &[u8], out: &mut impl std::io::Write) -> bool {
    if batch.len() + line.len() > BATCH_BYTES {
        write_to(batch, out);
    }
    if line.len() > BATCH_BYTES {
        return false;
    }
    batch.extend_from_slice(line);
    true
}

fn write_to(batch: &mut Vec<u8>, out: &mut impl std::io::Write) {
    if !batch.is_empty() {
        // Nowhere to report a failed write of the log itself.
        let _ = out.write_all(batch);
        batch.clear();
    }
}

/// Makes the calling thread batch its lines (see [`Stderr`]); it must call
/// [`flush_this_thread`] whenever it is about to wait, and before it ends.
pub fn batch_this_thread() {
    PENDING.with(|pending| *pending.borrow_mut() = Some(Vec::with_capacity(BATCH_BYTES)));
}

/// Writes the lines the calling thread has batched.
pub fn flush_this_thread() {
    PENDING.with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut() {
            if let Some(batch) = pending.as_mut() {
                write_to(batch, &mut std::io::stderr());
            }
        }
    });
}

/// Log output kept in memory, for tests that compare what is written.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::field::MakeExt as _;

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

    /// Records each write it gets, as one piece.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl std::io::Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batches_are_whole_lines_within_pipe_buf() {
        let mut batch = Vec::new();
        let mut out = Writes::default();
        let line = |n: usize| format!("line {n} {}\n", "x".repeat(n % 300)).into_bytes();
        let mut sent = Vec::new();
        for n in 0..200 {
            assert!(add_line(&mut batch, &line(n), &mut out));
            sent.extend(line(n));
        }
        assert!(
            out.0.len() >= 2,
            "{} writes for 200 lines: nothing was batched out",
            out.0.len()
        );
        assert!(out.0.len() < 100, "{} writes for 200 lines", out.0.len());
        for write in &out.0 {
            assert!(
                write.len() <= BATCH_BYTES,
                "a write of {} bytes",
                write.len()
            );
            assert!(write.ends_with(b"\n"), "a write that ends mid-line");
        }
        write_to(&mut batch, &mut out);
        assert!(batch.is_empty());
        assert_eq!(out.0.concat(), sent, "every line, once, in order");
        // A line longer than a batch goes alone, after what was batched.
        assert!(add_line(&mut batch, b"short\n", &mut out));
        let writes = out.0.len();
        assert!(!add_line(
            &mut batch,
            &vec![b'y'; BATCH_BYTES + 1],
            &mut out
        ));
        assert_eq!(out.0.len(), writes + 1);
        assert_eq!(out.0.last().map(Vec::as_slice), Some(&b"short\n"[..]));
        assert!(batch.is_empty());
    }

    #[test]
    fn lines_written_into_the_batch_go_out_as_added_lines_do() {
        let line = |n: usize| format!("line {n} {}\n", "x".repeat(n * 37 % 700)).into_bytes();
        let mut lines: Vec<Vec<u8>> = (0..200).map(line).collect();
        lines.insert(50, vec![b'y'; BATCH_BYTES + 1]);
        lines.insert(120, vec![b'z'; BATCH_BYTES]);
        let (mut added, mut added_out) = (Vec::new(), Writes::default());
        let (mut settled, mut settled_out) = (Vec::new(), Writes::default());
        for line in &lines {
            if !add_line(&mut added, line, &mut added_out) {
                added_out.0.push(line.clone());
            }
            let start = settled.len();
            settled.extend_from_slice(line);
            settle(&mut settled, start, &mut settled_out);
            assert!(settled.len() <= BATCH_BYTES);
        }
        assert_eq!(settled_out.0, added_out.0);
        assert_eq!(settled, added);
        assert!(settled_out.0.len() > 10, "{}", settled_out.0.len());
    }

    #[test]
    fn access_lines_are_written_directly_only_under_the_subscriber_init_builds() {
        let ours = |access| {
            build(
                LogFormat::Json,
                EnvFilter::new("info"),
                MakeStderr { access },
                false,
            )
        };
        for access in [
            AccessLog::Direct(LogFormat::Json),
            AccessLog::Direct(LogFormat::Text),
            AccessLog::Off,
        ] {
            tracing::subscriber::with_default(ours(access), || {
                assert_eq!(access_log(), access);
            });
        }
        let captured = Captured::default();
        let capture = subscriber(LogFormat::Json, EnvFilter::new("info"), move || {
            captured.clone()
        });
        tracing::subscriber::with_default(capture, || {
            assert_eq!(access_log(), AccessLog::Tracing);
        });
        let stderr_elsewise = subscriber(LogFormat::Text, EnvFilter::new("info"), || Stderr);
        tracing::subscriber::with_default(stderr_elsewise, || {
            assert_eq!(access_log(), AccessLog::Tracing);
        });
    }

    #[test]
    fn the_filter_decides_once_whether_access_lines_are_written() {
        let decide = |filter: &str, format, colours| {
            access_log_for(format, colours, &EnvFilter::new(filter))
        };
        let json = LogFormat::Json;
        assert_eq!(decide("info", json, false), AccessLog::Direct(json));
        assert_eq!(
            decide("warn,portico::access=info", LogFormat::Text, false),
            AccessLog::Direct(LogFormat::Text)
        );
        assert_eq!(
            decide("debug,portico=trace", json, false),
            AccessLog::Direct(json)
        );
        assert_eq!(
            decide("info,portico::access=off", json, false),
            AccessLog::Off
        );
        assert_eq!(decide("warn", json, false), AccessLog::Off);
        assert_eq!(decide("info,portico=warn", json, false), AccessLog::Off);
        // In colour the fmt layer writes every line, and the filter is
        // asked per request.
        assert_eq!(decide("info", LogFormat::Text, true), AccessLog::Tracing);
        let default = access_log_for(json, false, &filter_from_environment());
        if std::env::var_os("RUST_LOG").is_none() {
            assert_eq!(default, AccessLog::Direct(json));
        }
    }

    #[test]
    fn a_line_written_on_a_batching_thread_lands_in_its_batch() {
        std::thread::spawn(|| {
            batch_this_thread();
            write_line(|out| out.extend_from_slice(b"first\n"));
            write_line(|out| out.extend_from_slice(b"second\n"));
            PENDING.with(|pending| {
                assert_eq!(pending.borrow().as_deref(), Some(&b"first\nsecond\n"[..]))
            });
            flush_this_thread();
        })
        .join()
        .unwrap();
        // Elsewhere it is written at once, nothing kept.
        std::thread::spawn(|| {
            let mut called = false;
            write_line(|_| called = true);
            assert!(called);
            PENDING.with(|pending| assert!(pending.borrow().is_none()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_that_does_not_batch_writes_each_line_and_a_batching_one_on_flush() {
        // Off the workers nothing is kept back.
        std::thread::spawn(|| {
            let mut writer = Stderr;
            std::io::Write::write_all(&mut writer, b"").unwrap();
            PENDING.with(|pending| assert!(pending.borrow().is_none()));
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            batch_this_thread();
            let mut writer = Stderr;
            std::io::Write::write_all(&mut writer, b"batched line\n").unwrap();
            PENDING.with(|pending| {
                assert_eq!(pending.borrow().as_deref(), Some(&b"batched line\n"[..]))
            });
            flush_this_thread();
            PENDING.with(|pending| assert_eq!(pending.borrow().as_deref(), Some(&b""[..])));
        })
        .join()
        .unwrap();
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
