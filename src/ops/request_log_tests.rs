use super::*;
use crate::config::LogFormat;
use crate::ops::logging::{self, Captured};
use tracing_subscriber::EnvFilter;

/// What a request's handler might log: fields of each kind, an error, a
/// line inside a span of its own, and one in a span without fields.
fn handler_lines() {
    tracing::warn!(
        reason = "expired",
        count = 7,
        ok = true,
        "bearer token refused"
    );
    tracing::error!(error = %std::io::Error::other("boom"), path = ?"/a b", "upstream failed");
    tracing::info!(target: "portico::auth", sub = "alice", "signed in");
    {
        let inner = tracing::error_span!("refresh", attempt = 2);
        let _entered = inner.enter();
        tracing::warn!(only = 1.5);
        let bare = tracing::error_span!("bare");
        let _bare = bare.enter();
        tracing::warn!("two deep");
    }
    tracing::warn!("after the inner span");
}

/// The lines `subscriber` writes for a request with the id `4f2a9c` run
/// through [`within`] that logs `events`, plus one line written outside any
/// request.
fn lines_under(
    subscriber: impl Subscriber + Send + Sync + 'static,
    captured: &Captured,
    events: fn(),
) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let id = crate::request_id::from_trusted("4f2a9c");
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(within(&id, async {
            events();
            tokio::task::yield_now().await;
            tracing::warn!("after a yield");
        }));
        tracing::warn!("outside any request");
    });
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// The subscriber portico built before [`Lines`]: tracing-subscriber's own
/// formatters, under which [`within`] makes a span per request.
fn reference(format: LogFormat, captured: &Captured, events: fn()) -> String {
    let writer = captured.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(move || writer.clone());
    match format {
        LogFormat::Text => lines_under(
            builder
                .with_ansi(false)
                .fmt_fields(logging::plain_fields())
                .finish(),
            captured,
            events,
        ),
        LogFormat::Json => lines_under(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
            captured,
            events,
        ),
    }
}

fn ours(format: LogFormat, captured: &Captured, events: fn()) -> String {
    let writer = captured.clone();
    let subscriber = logging::subscriber(format, EnvFilter::new("info"), move || writer.clone());
    assert!(tracing::subscriber::with_default(
        logging::subscriber(format, EnvFilter::new("info"), Captured::default),
        super::ours
    ));
    lines_under(subscriber, captured, events)
}

/// Each line without its timestamp, which differs between two runs.
fn untimed(lines: &str, format: LogFormat) -> Vec<String> {
    lines
        .lines()
        .map(|line| match format {
            LogFormat::Text => {
                assert_eq!(line.as_bytes()[26], b'Z', "{line}");
                line[27..].to_owned()
            }
            LogFormat::Json => {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let stamp = value["timestamp"].as_str().unwrap();
                assert_eq!(stamp.len(), 27, "{line}");
                line.replacen(stamp, "", 1)
            }
        })
        .collect()
}

#[test]
fn text_lines_are_the_bytes_the_request_span_gave() {
    let expected = reference(LogFormat::Text, &Captured::default(), handler_lines);
    let actual = ours(LogFormat::Text, &Captured::default(), handler_lines);
    assert_eq!(
        untimed(&actual, LogFormat::Text),
        untimed(&expected, LogFormat::Text),
        "ours:\n{actual}\nreference:\n{expected}"
    );
    for wanted in [
        " WARN request{request_id=4f2a9c}: portico::ops::request_log::tests: bearer token refused reason=\"expired\" count=7 ok=true",
        " WARN request{request_id=4f2a9c}:refresh{attempt=2}:bare: portico::ops::request_log::tests: two deep",
        " INFO request{request_id=4f2a9c}: portico::auth: signed in sub=\"alice\"",
        " WARN request{request_id=4f2a9c}: portico::ops::request_log::tests: after a yield",
        " WARN portico::ops::request_log::tests: outside any request",
    ] {
        assert!(actual.contains(wanted), "no {wanted:?} in\n{actual}");
    }
    assert_eq!(actual.lines().count(), 8, "{actual}");
}

#[test]
fn json_lines_are_the_bytes_the_request_span_gave() {
    let expected = reference(LogFormat::Json, &Captured::default(), handler_lines);
    let actual = ours(LogFormat::Json, &Captured::default(), handler_lines);
    assert_eq!(
        untimed(&actual, LogFormat::Json),
        untimed(&expected, LogFormat::Json),
        "ours:\n{actual}\nreference:\n{expected}"
    );
    let objects: Vec<serde_json::Value> = actual
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let request = serde_json::json!({"request_id": "4f2a9c", "name": "request"});
    assert_eq!(objects[0]["span"], request);
    assert_eq!(objects[0]["spans"], serde_json::json!([request]));
    let two_deep = objects
        .iter()
        .find(|object| object["message"] == "two deep")
        .unwrap();
    assert_eq!(two_deep["span"]["name"], "bare");
    assert_eq!(two_deep["spans"][0], request);
    assert_eq!(two_deep["spans"][1]["attempt"], 2);
    let outside = objects.last().unwrap();
    assert_eq!(outside["message"], "outside any request");
    assert!(outside.get("span").is_none() && outside.get("spans").is_none());
}

#[test]
fn under_another_subscriber_the_request_still_gets_its_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    assert!(!tracing::subscriber::with_default(
        tracing_subscriber::fmt().finish(),
        super::ours
    ));
    let lines = lines_under(subscriber, &captured, handler_lines);
    assert!(
        lines.contains(
            "request{request_id=4f2a9c}: portico::ops::request_log::tests: after a yield"
        ),
        "{lines}"
    );
}

/// Values a client controls, shaped like the places [`text`] and [`json`]
/// put the request's span: a level word, `"spans":[`, closing braces,
/// quotes, newlines (in fields, where they are escaped; portico's messages
/// are its own words).
fn hostile_lines() {
    let shaped = "\" WARN x\"}]},\"spans\":[{\"name\":\"evil\"}]}\n ERROR y: }";
    tracing::warn!(path = shaped, "}} \"spans\":[ ERROR y: }}");
    tracing::warn!(target: "spans", spans = shaped, span = shaped);
    let inner = tracing::error_span!("refresh", path = shaped, spans = "\"spans\":[");
    let _entered = inner.enter();
    tracing::warn!(path = shaped, "\"spans\":[ in the message");
}

#[test]
fn values_shaped_like_the_insertion_points_do_not_move_the_request_span() {
    for format in [LogFormat::Text, LogFormat::Json] {
        let expected = reference(format, &Captured::default(), hostile_lines);
        let actual = ours(format, &Captured::default(), hostile_lines);
        assert_eq!(
            untimed(&actual, format),
            untimed(&expected, format),
            "ours:\n{actual}\nreference:\n{expected}"
        );
        assert_eq!(actual.lines().count(), 5, "{actual}");
    }
}

#[test]
fn lines_of_an_unknown_shape_are_left_as_they_are() {
    assert_eq!(text("no level here\n", "id", false), "no level here\n");
    assert_eq!(
        text(" INFO target: message\n", "id", false),
        " INFO request{request_id=id}: target: message\n"
    );
    assert_eq!(
        text("ERROR a{n=1}: target: message\n", "id", true),
        "ERROR request{request_id=id}:a{n=1}: target: message\n"
    );
    assert_eq!(json("not an object\n", "id", false), "not an object\n");
    assert_eq!(json("{\"span\":{}}\n", "id", true), "{\"span\":{}}\n");
    assert_eq!(
        json("{\"target\":\"t\"}\n", "id", false),
        "{\"target\":\"t\",\"span\":{\"request_id\":\"id\",\"name\":\"request\"},\"spans\":[{\"request_id\":\"id\",\"name\":\"request\"}]}\n"
    );
}
