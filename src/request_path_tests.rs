use super::*;
use proptest::prelude::*;

fn canonical(path: &str) -> String {
    canonicalize(path)
        .unwrap_or_else(|refusal| panic!("{path}: {refusal}"))
        .path
        .into_owned()
}

fn refusal(path: &str) -> PathRefusal {
    match canonicalize(path) {
        Ok(canonical) => panic!("{path} was accepted as {}", canonical.path),
        Err(refusal) => refusal,
    }
}

#[test]
fn canonical_paths_are_borrowed_not_copied() {
    for path in [
        "/",
        "/app/page",
        "/a/b/",
        "/files/my%20doc.pdf",
        "/caf%C3%A9",
        "/a-b_c.d~e/x.y",
        "/users/@me:self!",
        "/json/{\"a\"}",
    ] {
        let result = canonicalize(path).unwrap();
        assert!(matches!(result.path, Cow::Borrowed(_)), "{path} was copied");
        assert_eq!(result.path, path);
        assert!(!result.needs_opt_in(), "{path}");
    }
}

#[test]
fn the_quick_look_sends_anything_unusual_to_the_full_reading() {
    for path in ["/app/x", "/a-b_c~d/e.f", "/users/@me:self!", "/"] {
        assert!(is_plainly_canonical(path.as_bytes()), "{path}");
    }
    for path in [
        "//a",
        "/a//b",
        "/.",
        "/a/..",
        "/.well-known",
        "/a%61",
        "/a;b",
        "/a\\b",
        "/a b",
        "/café",
        "/a\u{7f}",
    ] {
        assert!(!is_plainly_canonical(path.as_bytes()), "{path}");
    }
    // The full reading still passes what only looked unusual.
    assert_eq!(canonical("/.well-known/x"), "/.well-known/x");
}

#[test]
fn encoded_unreserved_characters_are_decoded() {
    assert_eq!(canonical("/%61dmin/x"), "/admin/x");
    assert_eq!(canonical("/adm%69n/x"), "/admin/x");
    assert_eq!(canonical("/%41%5a%30%2D%5F%7E"), "/AZ0-_~");
    assert_eq!(canonical("/a%2E%2Eb"), "/a..b");
}

#[test]
fn other_escapes_get_upper_case_hex_and_stay_encoded() {
    assert_eq!(canonical("/a%20b"), "/a%20b");
    assert_eq!(canonical("/caf%c3%a9"), "/caf%C3%A9");
    assert_eq!(canonical("/q%3fx%23y"), "/q%3Fx%23y");
    assert_eq!(canonical("/a%25zz"), "/a%25zz");
}

#[test]
fn literal_non_ascii_is_percent_encoded() {
    assert_eq!(canonical("/café"), "/caf%C3%A9");
    assert_eq!(canonical("/日本"), "/%E6%97%A5%E6%9C%AC");
}

#[test]
fn repeated_slashes_are_merged_and_a_trailing_slash_kept() {
    assert_eq!(canonical("//admin/x"), "/admin/x");
    assert_eq!(canonical("///admin/x"), "/admin/x");
    assert_eq!(canonical("/a//b///c"), "/a/b/c");
    assert_eq!(canonical("/a//"), "/a/");
    assert_eq!(canonical("//"), "/");
    assert_eq!(canonical("/"), "/");
    assert_eq!(canonical("/a/"), "/a/");
}

#[test]
fn dot_segments_are_refused_in_every_spelling() {
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E./admin",
        "/./x",
        "/a/.%2e",
        "/a/%2e",
        "/a/..",
        "/a/.",
        "/a//../b",
        "/..",
    ] {
        assert_eq!(refusal(path), PathRefusal::DotSegment, "{path}");
    }
    for path in [
        "/files/a..b/c.txt",
        "/a/.../b",
        "/a/%2e%2e%2e",
        "/.well-known/x",
        "/a/.b",
    ] {
        canonical(path);
    }
}

#[test]
fn control_characters_are_refused_encoded_or_not() {
    for path in [
        "/admin%00/x",
        "/a%0d%0aSet-Cookie",
        "/a%7f",
        "/a%1F",
        "/a b",
        "/a\tb",
        "/a\u{7f}",
    ] {
        assert_eq!(refusal(path), PathRefusal::ControlCharacter, "{path}");
    }
}

#[test]
fn malformed_and_double_escapes_are_refused() {
    for path in ["/a%", "/a%2", "/a%zz", "/a%g0/b", "/%%61"] {
        assert_eq!(refusal(path), PathRefusal::MalformedEscape, "{path}");
    }
    assert_eq!(refusal("/%2561dmin"), PathRefusal::DoubleEncoding);
    assert_eq!(refusal("/a%252F"), PathRefusal::DoubleEncoding);
    // The digits after %25 may themselves be escaped.
    assert_eq!(refusal("/%25%61%61"), PathRefusal::DoubleEncoding);
    assert_eq!(refusal("/%25a%62"), PathRefusal::DoubleEncoding);
}

#[test]
fn encoded_bytes_must_be_utf8() {
    for path in [
        "/%C0%AE%C0%AE/admin",
        "/%FF",
        "/%C3",
        "/%C3/x",
        "/%C3a",
        "/%ED%A0%80",
        "/%C3é",
    ] {
        assert_eq!(refusal(path), PathRefusal::NotUtf8, "{path}");
    }
    assert_eq!(canonical("/%C3%A9/%F0%9F%98%80"), "/%C3%A9/%F0%9F%98%80");
}

#[test]
fn encoded_slashes_and_backslashes_are_flagged() {
    for path in [
        "/admin%2fx",
        "/admin%2Fx",
        "/%2fadmin/x",
        "/admin%5cx",
        "/admin\\x",
    ] {
        let result = canonicalize(path).unwrap();
        assert!(result.encoded_slashes, "{path}");
        assert!(!result.path_parameters, "{path}");
    }
    assert_eq!(canonical("/admin%2fx"), "/admin%2Fx");
}

#[test]
fn path_parameters_are_flagged() {
    for path in ["/admin;x", "/admin;jsessionid=1/x", "/a%3bb"] {
        let result = canonicalize(path).unwrap();
        assert!(result.path_parameters, "{path}");
        assert!(!result.encoded_slashes, "{path}");
    }
}

#[test]
fn a_path_must_start_with_a_slash() {
    assert_eq!(refusal(""), PathRefusal::NotAbsolute);
    assert_eq!(refusal("*"), PathRefusal::NotAbsolute);
    assert_eq!(refusal("admin"), PathRefusal::NotAbsolute);
}

#[test]
fn the_lenient_reading_is_what_tomcat_and_decoding_servers_see() {
    assert_eq!(lenient_reading("/admin%2Fx").unwrap(), "/admin/x");
    assert_eq!(lenient_reading("/%2Fadmin/x").unwrap(), "/admin/x");
    assert_eq!(lenient_reading("/admin%5Cx").unwrap(), "/admin/x");
    assert_eq!(lenient_reading("/admin\\x").unwrap(), "/admin/x");
    assert_eq!(lenient_reading("/admin;x").unwrap(), "/admin");
    assert_eq!(
        lenient_reading("/admin;jsessionid=1/x").unwrap(),
        "/admin/x"
    );
    assert_eq!(lenient_reading("/;x/admin").unwrap(), "/admin");
    assert_eq!(lenient_reading("/a%3Bb/c").unwrap(), "/a/c");
    assert_eq!(lenient_reading("/a/").unwrap(), "/a/");
    assert_eq!(lenient_reading("/").unwrap(), "/");
    for path in [
        "/app/..;/admin",
        "/app/..%2Fadmin",
        "/app%2F..%2Fadmin",
        "/a/.;x/b",
    ] {
        assert_eq!(
            lenient_reading(path),
            Err(PathRefusal::DotSegment),
            "{path}"
        );
    }
}

#[test]
fn prefixes_are_kept_in_their_matching_form() {
    assert_eq!(prefix_form("/admin").unwrap(), "/admin");
    assert_eq!(prefix_form("//adm%69n/").unwrap(), "/admin/");
    assert_eq!(prefix_form("/a%21b").unwrap(), "/a!b");
    assert_eq!(prefix_form("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    assert_eq!(prefix_form("/a%2Fb"), Err(PathRefusal::EncodedSlash));
    assert_eq!(prefix_form("/a;b"), Err(PathRefusal::PathParameters));
    assert_eq!(prefix_form("/a/../b"), Err(PathRefusal::DotSegment));
    assert_eq!(prefix_form("admin"), Err(PathRefusal::NotAbsolute));
}

#[test]
fn match_units_decode_structure_free_escapes_only() {
    assert_eq!(match_unit(b"%21", 0), (b'!', 3));
    assert_eq!(match_unit(b"%40x", 0), (b'@', 3));
    assert_eq!(match_unit(b"%2F", 0), (b'%', 1));
    assert_eq!(match_unit(b"%3B", 0), (b'%', 1));
    assert_eq!(match_unit(b"%20", 0), (b'%', 1));
    assert_eq!(match_unit(b"%C3", 0), (b'%', 1));
    assert_eq!(match_unit(b"a", 0), (b'a', 1));
}

/// Paths built from the pieces attacks are made of.
fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("\\".to_string()),
        Just(";".to_string()),
        Just("%3b".to_string()),
        Just("%25".to_string()),
        Just("%61".to_string()),
        Just("%c3%a9".to_string()),
        Just("é".to_string()),
        Just("%".to_string()),
        Just("%00".to_string()),
        Just("%20".to_string()),
        Just("%7e".to_string()),
        "[a-zA-Z0-9_~!@:=+-]{1,4}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn the_quick_look_never_passes_what_the_full_reading_would_change(path in path_strategy()) {
        if is_plainly_canonical(path.as_bytes()) {
            let full = canonicalize(&path).expect("plain paths are canonical");
            prop_assert_eq!(&full.path, &path);
            prop_assert!(!full.needs_opt_in());
        }
    }

    #[test]
    fn canonicalizing_is_idempotent_and_its_output_is_clean(path in path_strategy()) {
        if let Ok(first) = canonicalize(&path) {
            let text = first.path.to_string();
            let again = canonicalize(&text).expect("a canonical path is accepted again");
            prop_assert_eq!(&again.path, &text);
            prop_assert!(matches!(again.path, Cow::Borrowed(_)), "canonical input is not copied");
            prop_assert_eq!(again.encoded_slashes, first.encoded_slashes);
            prop_assert_eq!(again.path_parameters, first.path_parameters);
            prop_assert!(text.starts_with('/'));
            prop_assert!(!text.contains("//"), "{}", text);
            prop_assert!(text.is_ascii());
            for segment in text.split('/') {
                prop_assert!(segment != "." && segment != "..", "{}", text);
                prop_assert!(!segment.to_ascii_lowercase().contains("%2e"), "{}", text);
            }
            for (index, _) in text.match_indices('%') {
                let hex = &text[index + 1..index + 3];
                prop_assert!(hex.bytes().all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase()), "{}", text);
                let value = u8::from_str_radix(hex, 16).unwrap();
                prop_assert!(!is_unreserved(value), "{}", text);
                prop_assert!(value >= 0x20 && value != 0x7F, "{}", text);
            }
            prop_assert_eq!(matches!(first.path, Cow::Borrowed(_)), text == path);
            if let Ok(reading) = lenient_reading(&text) {
                prop_assert!(!reading.contains("//"), "{}", reading);
                prop_assert!(!reading.contains(';') && !reading.contains('\\'), "{}", reading);
                prop_assert!(!reading.to_ascii_uppercase().contains("%2F"), "{}", reading);
            }
        }
    }

    #[test]
    fn any_text_gets_an_answer_never_a_panic(path in "\\PC{0,40}") {
        let _ = canonicalize(&path);
        let _ = canonicalize(&format!("/{path}"));
        let _ = lenient_reading(&format!("/{path}"));
        let _ = prefix_form(&format!("/{path}"));
    }
}
