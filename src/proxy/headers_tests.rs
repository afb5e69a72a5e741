use super::*;

#[test]
fn addresses_are_written_as_display_writes_them() {
    for text in [
        "0.0.0.0",
        "127.0.0.1",
        "10.20.100.255",
        "1.2.3.4",
        "::1",
        "fe80::1",
    ] {
        let ip: std::net::IpAddr = text.parse().unwrap();
        assert_eq!(ip_text(ip), ip.to_string());
    }
}

fn names(headers: &UpstreamHeaders<'_>) -> Vec<String> {
    headers.iter().map(|(name, _)| name.to_string()).collect()
}

#[test]
fn identity_headers_are_stripped_in_every_spelling() {
    let mut client = HeaderMap::new();
    client.insert("X-Forwarded-User", HeaderValue::from_static("mallory"));
    client.insert("x_forwarded_email", HeaderValue::from_static("m@evil"));
    client.insert("X_FORWARDED_GROUPS", HeaderValue::from_static("admin"));
    client.insert("x-portico-identity", HeaderValue::from_static("forged"));
    client.insert("x-other", HeaderValue::from_static("kept"));
    let headers = UpstreamHeaders::new(&client, |_| false);
    assert_eq!(names(&headers), ["x-other"]);
}

#[test]
fn framing_headers_spelt_with_underscores_are_dropped() {
    let mut client = HeaderMap::new();
    client.insert("transfer_encoding", HeaderValue::from_static("chunked"));
    client.insert("content_length", HeaderValue::from_static("5"));
    client.insert("Keep_Alive", HeaderValue::from_static("1"));
    client.insert("x_custom_header", HeaderValue::from_static("kept"));
    client.insert("content-type", HeaderValue::from_static("text/plain"));
    let headers = UpstreamHeaders::new(&client, |_| false);
    assert_eq!(names(&headers), ["x_custom_header", "content-type"]);
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut client = HeaderMap::new();
    client.insert(
        CONNECTION,
        HeaderValue::from_static("keep-alive, x-secret-hop"),
    );
    client.insert("x-secret-hop", HeaderValue::from_static("1"));
    client.insert("te", HeaderValue::from_static("trailers"));
    client.insert("accept", HeaderValue::from_static("*/*"));
    assert_eq!(names(&UpstreamHeaders::new(&client, |_| false)), ["accept"]);

    let mut only_upgrade = HeaderMap::new();
    only_upgrade.insert("upgrade", HeaderValue::from_static("websocket"));
    only_upgrade.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
    only_upgrade.insert("x-kept", HeaderValue::from_static("1"));
    assert_eq!(
        names(&UpstreamHeaders::new(&only_upgrade, |_| false)),
        ["x-kept"]
    );

    let mut named_only = HeaderMap::new();
    named_only.insert(CONNECTION, HeaderValue::from_static("X-Private"));
    named_only.insert("x-private", HeaderValue::from_static("1"));
    named_only.insert("x-public", HeaderValue::from_static("1"));
    assert_eq!(
        names(&UpstreamHeaders::new(&named_only, |_| false)),
        ["x-public"]
    );

    let mut none = HeaderMap::new();
    none.insert("accept", HeaderValue::from_static("*/*"));
    none.insert("cookie", HeaderValue::from_static("a=1"));
    let passed = UpstreamHeaders::new(&none, |_| false);
    assert_eq!(names(&passed), ["accept", "cookie"]);
    assert_eq!(passed.get("cookie").unwrap(), "a=1");
}

#[test]
fn only_portico_cookies_are_removed() {
    let mut client = HeaderMap::new();
    client.append(COOKIE, HeaderValue::from_static("a=1; portico_session=xyz"));
    client.append(
        COOKIE,
        HeaderValue::from_static("portico_session_login_abc=q; b=2"),
    );
    let headers = UpstreamHeaders::new(&client, |name| name.starts_with("portico_session"));
    assert_eq!(names(&headers), ["cookie"]);
    assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
    let mut only_ours = HeaderMap::new();
    only_ours.insert(COOKIE, HeaderValue::from_static("portico_session=1"));
    let headers = UpstreamHeaders::new(&only_ours, |name| name == "portico_session");
    assert!(headers.get("cookie").is_none());
    // Two lines of the client's own cookies go as one.
    let mut two_lines = HeaderMap::new();
    two_lines.append(COOKIE, HeaderValue::from_static("a=1"));
    two_lines.append(COOKIE, HeaderValue::from_static("b=2"));
    let headers = UpstreamHeaders::new(&two_lines, |_| false);
    assert_eq!(names(&headers), ["cookie"]);
    assert_eq!(headers.get("cookie").unwrap(), "a=1; b=2");
}

#[test]
fn what_portico_sets_or_removes_replaces_the_clients() {
    let mut client = HeaderMap::new();
    client.insert("host", HeaderValue::from_static("public.example"));
    client.insert("x-request-id", HeaderValue::from_static("client-chosen"));
    client.insert("accept", HeaderValue::from_static("*/*"));
    let mut headers = UpstreamHeaders::new(&client, |_| false);
    headers.set(
        http::header::HOST,
        HeaderValue::from_static("upstream.internal"),
    );
    headers.remove(HeaderName::from_static("x-request-id"));
    assert_eq!(names(&headers), ["accept", "host"]);
    assert_eq!(headers.get("host").unwrap(), "upstream.internal");
}

#[test]
fn forwarded_chain_is_only_extended_for_trusted_proxies() {
    let ip: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    let mut client = HeaderMap::new();
    client.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
    client.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    client.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
    let mut headers = UpstreamHeaders::new(&client, |_| false);
    headers.forwarded(ip, "https", Some("app.example"), false);
    assert_eq!(headers.get("x-forwarded-for").unwrap(), "10.0.0.9");
    assert_eq!(headers.get("x-forwarded-proto").unwrap(), "https");
    assert_eq!(headers.get("x-forwarded-host").unwrap(), "app.example");
    assert_eq!(names(&headers).len(), 3, "the client's copies are gone");

    let mut trusted = UpstreamHeaders::new(&client, |_| false);
    trusted.forwarded(ip, "https", Some("app.example"), true);
    assert_eq!(trusted.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
    assert_eq!(trusted.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(trusted.get("x-forwarded-host").unwrap(), "evil.example");
    assert_eq!(names(&trusted).len(), 3);

    let no_chain = HeaderMap::new();
    let mut fresh = UpstreamHeaders::new(&no_chain, |_| false);
    fresh.forwarded(ip, "https", None, true);
    assert_eq!(fresh.get("x-forwarded-for").unwrap(), "10.0.0.9");
    assert_eq!(fresh.get("x-forwarded-proto").unwrap(), "https");
    assert!(fresh.get("x-forwarded-host").is_none());
}

#[test]
fn unicode_identity_values_are_passed_as_bytes_and_control_characters_dropped() {
    let mut session = crate::session::SessionData::for_bearer(crate::session::Identity {
        sub: "bad\r\nInjected: 1".into(),
        email: Some("jose@example.com".into()),
        preferred_username: Some("José".into()),
        roles: vec!["admin".into(), "ops".into()],
        ..Default::default()
    });
    let client = HeaderMap::new();
    let mut headers = UpstreamHeaders::new(&client, |_| false);
    headers.identity(&session);
    assert!(headers.get("x-forwarded-user").is_none());
    assert_eq!(headers.get("x-forwarded-groups").unwrap(), "admin,ops");
    assert_eq!(
        headers
            .get("x-forwarded-preferred-username")
            .unwrap()
            .as_bytes(),
        "José".as_bytes()
    );
    // Built once per record: a copy that changes builds its own, and a
    // change in place clears what was built (as a refresh does).
    let mut copy = session.clone();
    copy.sub = "alice".into();
    let mut headers = UpstreamHeaders::new(&client, |_| false);
    headers.identity(&copy);
    assert_eq!(headers.get("x-forwarded-user").unwrap(), "alice");
    session.sub = "bob".into();
    session.identity_headers.clear();
    let mut fresh = UpstreamHeaders::new(&client, |_| false);
    fresh.identity(&session);
    assert_eq!(fresh.get("x-forwarded-user").unwrap(), "bob");
    assert_eq!(fresh.get("x-forwarded-groups").unwrap(), "admin,ops");
}

#[test]
fn routing_headers_from_untrusted_clients_do_not_pass() {
    let mut client = HeaderMap::new();
    for (name, value) in [
        ("forwarded", "for=6.6.6.6;host=evil"),
        ("x-real-ip", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x-forwarded-port", "8443"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-ssl", "on"),
        ("x_forwarded_server", "evil"),
        ("x-original-url", "/admin/x"),
        ("x-rewrite-url", "/admin/x"),
        ("x-original-uri", "/admin/x"),
        ("true-client-ip", "6.6.6.6"),
        ("x-client-ip", "6.6.6.6"),
        ("accept", "*/*"),
        ("x-forward", "kept: not a routing header"),
        ("forwarded-for-me", "kept"),
    ] {
        client.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static(value),
        );
    }
    let mut untrusted = UpstreamHeaders::new(&client, |_| false);
    untrusted.forwarded(
        "10.0.0.9".parse().unwrap(),
        "https",
        Some("app.example"),
        false,
    );
    let mut passed = names(&untrusted);
    passed.sort();
    assert_eq!(
        passed,
        [
            "accept",
            "forwarded-for-me",
            "x-forward",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto"
        ]
    );
    // Until told the client is trusted, nothing of the kind passes.
    assert!(!names(&UpstreamHeaders::new(&client, |_| false)).contains(&"x-real-ip".to_string()));

    let mut trusted = UpstreamHeaders::new(&client, |_| false);
    trusted.forwarded(
        "10.0.0.9".parse().unwrap(),
        "https",
        Some("app.example"),
        true,
    );
    for name in [
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
    ] {
        assert!(trusted.get(name).is_some(), "{name}");
    }
    assert_eq!(
        trusted.get("forwarded").unwrap(),
        "for=6.6.6.6;host=evil, for=10.0.0.9"
    );
    assert_eq!(
        names(&trusted)
            .iter()
            .filter(|name| *name == "forwarded")
            .count(),
        1
    );
}

#[test]
fn forwarded_is_extended_only_when_a_trusted_proxy_sent_one() {
    let mut two_lines = HeaderMap::new();
    two_lines.append(FORWARDED, HeaderValue::from_static("for=1.1.1.1"));
    two_lines.append(
        FORWARDED,
        HeaderValue::from_static("for=\"[2001:db8::1]\";proto=https"),
    );
    assert_eq!(
        extended_forwarded(&two_lines, "::1".parse().unwrap()).unwrap(),
        "for=1.1.1.1, for=\"[2001:db8::1]\";proto=https, for=\"[::1]\""
    );
    assert!(extended_forwarded(&HeaderMap::new(), "10.0.0.1".parse().unwrap()).is_none());
    let none = HeaderMap::new();
    let mut trusted = UpstreamHeaders::new(&none, |_| false);
    trusted.forwarded("10.0.0.9".parse().unwrap(), "https", None, true);
    assert!(trusted.get("forwarded").is_none());
}

#[test]
fn routing_header_names_are_recognised_in_both_spellings_only() {
    for name in [
        "forwarded",
        "x-forwarded-anything",
        "x_forwarded_port",
        "x-real-ip",
        "x_rewrite_url",
    ] {
        assert!(is_routing_header(name), "{name}");
    }
    for name in [
        "x-forwarded-",
        "accept",
        "x-requested-with",
        "cookie",
        "x-forwardedfor",
        "te",
    ] {
        assert!(!is_routing_header(name), "{name}");
    }
}
