use super::*;
use crate::error::GatewayError;
use crate::pages;

async fn body_of(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn assert_hardened(response: &Response, what: &str) {
    let headers = response.headers();
    let policy = headers
        .get(CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "{what}: {policy}"
    );
    assert!(policy.starts_with("default-src 'none'"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert_eq!(headers.get(X_FRAME_OPTIONS).unwrap(), "DENY", "{what}");
    assert_eq!(
        headers.get(X_CONTENT_TYPE_OPTIONS).unwrap(),
        "nosniff",
        "{what}"
    );
    assert_eq!(
        headers.get(REFERRER_POLICY).unwrap(),
        "no-referrer",
        "{what}"
    );
    assert!(
        response.extensions().get::<PorticoAnswer>().is_some(),
        "{what}"
    );
}

#[tokio::test]
async fn every_portico_page_and_error_carries_the_headers_and_its_inline_blocks_are_allowed() {
    let answers: Vec<(&str, Response)> = vec![
        (
            "error page",
            pages::error_response(&GatewayError::NoRoute, "r1", false),
        ),
        (
            "error json",
            pages::error_response(&GatewayError::NotSignedIn, "r1", true),
        ),
        (
            "forbidden page",
            pages::forbidden(Some("bob"), "csrf", Some("/admin"), "r1", false),
        ),
        (
            "forbidden json",
            pages::forbidden(Some("bob"), "csrf", Some("/admin"), "r1", true),
        ),
        ("signed out", pages::signed_out()),
        (
            "sign-out confirmation",
            pages::sign_out_confirmation(Some("bob"), "csrf", Some("/x"), "r1"),
        ),
    ];
    for (what, response) in answers {
        assert_hardened(&response, what);
        let body = body_of(response).await;
        policy_allows_inline_blocks_of(&body).unwrap_or_else(|problem| panic!("{what}: {problem}"));
    }
}

#[test]
fn the_policy_allows_the_own_stylesheet_and_hashes_the_inline_scripts() {
    let policy = policy();
    assert!(policy.contains("style-src 'self'"), "{policy}");
    assert!(!policy.contains("'unsafe-inline'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(!policy.contains("'self'; script") && !policy.contains("script-src 'self'"));
    // Every inline block of a page template is static text: one with an
    // askama expression would render differently from the hashed source.
    for (name, source) in PAGE_TEMPLATES {
        for tag in ["script", "style"] {
            for block in inline_blocks(source, tag) {
                assert!(
                    !block.contains("{{") && !block.contains("{%"),
                    "{name}: an inline <{tag}> holds template code"
                );
            }
        }
    }
}

#[test]
fn every_template_with_inline_code_is_a_hashed_page_or_the_echo_app() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".html") {
            continue; // the stylesheet is served as a file, not inline
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let inline = source.contains("<script") || source.contains("<style");
        let listed = PAGE_TEMPLATES.iter().any(|(listed, _)| *listed == name);
        assert!(
            !inline || listed || name == "devop_echo.html",
            "{name} has inline code: add it to PAGE_TEMPLATES"
        );
    }
}

#[test]
fn inline_blocks_are_found_with_or_without_attributes() {
    let page = "<style>a{}</style><styles>x</styles><script type=\"module\">b()</script><script>c()</script>";
    assert_eq!(inline_blocks(page, "style"), ["a{}"]);
    assert_eq!(inline_blocks(page, "script"), ["b()", "c()"]);
    assert!(inline_blocks("<script>unterminated", "script").is_empty());
}

#[test]
fn hsts_is_added_to_portico_answers_only_and_only_for_https() {
    let mut ours = pages::signed_out();
    add_hsts(&mut ours, true);
    assert_eq!(
        ours.headers().get(STRICT_TRANSPORT_SECURITY).unwrap(),
        "max-age=31536000"
    );
    let mut plain = pages::signed_out();
    add_hsts(&mut plain, false);
    assert!(plain.headers().get(STRICT_TRANSPORT_SECURITY).is_none());
    let mut upstream = Response::new(axum::body::Body::empty());
    add_hsts(&mut upstream, true);
    assert!(upstream.headers().get(STRICT_TRANSPORT_SECURITY).is_none());
}
