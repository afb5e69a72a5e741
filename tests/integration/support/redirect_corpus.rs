// Open-redirect payloads, generated: return URLs that must never take a
// browser off portico's origin.
//
// Plain std, no dependencies, and no inner attributes: the unit tests of
// `src/redirect.rs` `include!` this same file, so both layers judge the same
// payloads.
//
// Every payload here is hostile: its intended destination is a host we do
// not own (`evil.example` in its many spellings, or an IP address outside
// loopback), a script URL, or the allow-listed host used as a prefix or a
// suffix of someone else's host. A correct return-URL rule either refuses
// it (the browser goes to `public_url`) or reads it as a path on our own
// origin. None may end anywhere else — not even on the allow-listed host
// itself, which no payload names exactly.
//
// The classes follow what browsers are known to accept (WHATWG URL
// Standard, <https://url.spec.whatwg.org/>: backslash read as slash in
// special schemes, tab and newline removed anywhere, leading and trailing
// C0 control or space stripped, IPv4 in decimal, octal and hex) and the
// payload families collected by public open-redirect lists (OWASP
// "Unvalidated Redirects and Forwards Cheat Sheet", PortSwigger's URL
// validation bypass cheat sheet).

use std::collections::BTreeSet;

/// Hosts that are not ours, however they are spelt.
fn foreign_hosts(allowed_host: &str) -> Vec<String> {
    let mut hosts: Vec<String> = [
        "evil.example",
        "evil.example.",
        "evil%2eexample",
        "evil。example",    // U+3002 ideographic full stop
        "evil．example",    // U+FF0E full-width full stop
        "ｅｖｉｌ.example", // full-width letters (IDNA maps them)
        "8.8.8.8",
        "134744072",        // 8.8.8.8 in decimal
        "0x08080808",       // in hex
        "010.010.010.010",  // in octal
        "0x8.0x8.0x8.0x8",  // dotted hex
        "8.8.2056",         // three-part form
        "[::ffff:808:808]", // IPv4-mapped IPv6
        "[2001:db8::1]",    // documentation IPv6
    ]
    .iter()
    .map(|host| host.to_string())
    .collect();
    // The allowed host as a prefix or a suffix of another host.
    hosts.extend([
        format!("{allowed_host}.evil.example"),
        format!("{allowed_host}evil.example"),
        format!("evil{allowed_host}"),
        format!("{allowed_host}%2eevil.example"),
        format!("{allowed_host}%00.evil.example"),
        format!("{allowed_host}@evil.example"),
        format!("{allowed_host}%40evil.example"),
        format!("{allowed_host}:443@evil.example"),
    ]);
    hosts
}

/// What comes before the host: ways to make a "path" mean another host.
fn prefixes() -> Vec<&'static str> {
    vec![
        // scheme-relative
        "//",
        "///",
        "////",
        // backslashes (a browser reads `\` as `/` in http(s) URLs)
        "\\\\",
        "/\\",
        "\\/",
        "/\\\\",
        // percent-encoded and double-encoded slashes and backslashes
        "%2f%2f",
        "/%2f",
        "%2F%2F",
        "%252f%252f",
        "/%252f",
        "%5c%5c",
        "/%5c",
        "%255c%255c",
        "/%255c",
        "/%2f%5c",
        // dot segments
        "/../",
        "/..//",
        "/./\\",
        "/.%2e//",
        "/%2e%2e/%2f",
        "/foo/..//",
        "/..;/",
        // full-width solidus and other look-alikes
        "／／", // U+FF0F
        "＼＼", // U+FF3C
        "⁄⁄",   // U+2044 fraction slash
        "∕∕",   // U+2215 division slash
        "/／",
        "%EF%BC%8F%EF%BC%8F", // U+FF0F, encoded
        // schemes, in every case and shape
        "https://",
        "http://",
        "HTTPS://",
        "hTtP://",
        "https:",
        "https:/",
        "https:\\\\",
        "http:/\\",
        "https:%2f%2f",
        "ftp://",
        " https://",
        "\u{0}https://",
        // user@host
        "https://us@",
        "//us@",
        "https://us:pw@",
        "/\\us@",
    ]
}

/// What follows the host.
fn suffixes() -> Vec<&'static str> {
    vec!["", "/", "/path?q=1#frag", "%2f..", "?", "#"]
}

/// Control characters and whitespace, literal and percent-encoded.
fn controls() -> Vec<&'static str> {
    vec![
        "\t", "\n", "\r", "\u{0}", "\u{b}", "\u{c}", "\u{1f}", "\u{7f}", " ", "%09", "%0a", "%0d",
        "%00", "%0A%0D", "\u{a0}", "\u{2028}",
    ]
}

/// Script and data URLs, in mixed case and split by control characters.
fn script_payloads() -> Vec<String> {
    let mut payloads = Vec::new();
    for scheme in [
        "javascript",
        "JavaScript",
        "JAVASCRIPT",
        "jAvAsCrIpT",
        "java\tscript",
        "java\nscript",
        "java%09script",
        "%6aavascript",
        "vbscript",
        "data",
        "DATA",
        "DaTa",
        "file",
        "blob",
    ] {
        for body in [
            "alert(1)",
            "alert(document.domain)//",
            "//evil.example/%0aalert(1)",
            "text/html,<script>alert(1)</script>",
            "text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
            "///etc/passwd",
        ] {
            payloads.push(format!("{scheme}:{body}"));
            payloads.push(format!("/{scheme}:{body}").replacen('/', "//", 1));
            payloads.push(format!("\u{1}{scheme}:{body}"));
        }
    }
    payloads
}

/// A short list written by hand: shapes the generator does not build.
pub fn handwritten(own_host: &str, allowed_host: &str) -> Vec<String> {
    vec![
        format!("https://{own_host}@evil.example/"),
        format!("https://{own_host}:443@evil.example/"),
        format!("//{own_host}@evil.example"),
        format!("https://evil.example\\@{own_host}"),
        format!("https://evil.example#@{own_host}"),
        format!("https://evil.example?@{own_host}"),
        format!("https://evil.example/{allowed_host}"),
        format!("https://evil.example?{allowed_host}"),
        format!("https://evil.example#{allowed_host}"),
        format!("https://evil.example\\.{allowed_host}"),
        format!("http://{allowed_host}.evil.example/"),
        format!("https:/\\{allowed_host}.evil.example"),
        "/\t/evil.example".to_string(),
        "/\n/evil.example".to_string(),
        "\t//evil.example".to_string(),
        "//evil.example\t".to_string(),
        "/%09/evil.example".to_string(),
        "/%5cevil.example".to_string(),
        "/%2f%2fevil.example".to_string(),
        "%68%74%74%70%73%3a%2f%2f%65%76%69%6c%2e%65%78%61%6d%70%6c%65".to_string(),
        "/%68%74%74%70%73%3a%2f%2f%65%76%69%6c%2e%65%78%61%6d%70%6c%65".to_string(),
        "〱evil.example".to_string(), // U+3031, looks like a slash in some fonts
        "/〱evil.example".to_string(),
        "https://evil.example%E3%80%82com".to_string(),
        "https://evil.example%ef%bc%8f".to_string(),
        "////\\;@evil.example".to_string(),
        "/.evil.example".to_string(),
        "..//evil.example".to_string(),
        "..\\\\evil.example".to_string(),
        "/https:evil.example".to_string(),
        "https:evil.example".to_string(),
        "http:evil.example".to_string(),
        "//evil.example:80#@/".to_string(),
        "//evil.example:80?@/".to_string(),
        "https://0/".to_string(),
        "https://0.0.0.0/".to_string(),
        "https://[::]/".to_string(),
        "https://①②⑦.⓪.⓪.①/".to_string(),
        "javascript://%0aalert(1)".to_string(),
        "javascript://evil.example/%0aalert(1)".to_string(),
        "\u{0}javascript:alert(1)".to_string(),
        "\u{20}javascript:alert(1)".to_string(),
        "data:,".to_string(),
        "about:blank".to_string(),
        "view-source:https://evil.example".to_string(),
        "mailto:a@evil.example".to_string(),
        ";alert(0);//".to_string(),
        "\";alert(0);//".to_string(),
    ]
}

/// Every generated payload plus the hand list, without duplicates.
/// `own_host`: portico's host (for `own@evil` forms); `allowed_host`: a host
/// in `allowed_redirect_hosts`, used only as a part of foreign hosts.
pub fn payloads(own_host: &str, allowed_host: &str) -> Vec<String> {
    let mut set: BTreeSet<String> = BTreeSet::new();
    let hosts = foreign_hosts(allowed_host);
    let prefixes = prefixes();
    let suffixes = suffixes();
    // Each prefix with each host; the suffix turns with the pair, so every
    // suffix meets every prefix and every host without multiplying the count.
    for (prefix_index, prefix) in prefixes.iter().enumerate() {
        for (host_index, host) in hosts.iter().enumerate() {
            let suffix = suffixes[(prefix_index + host_index) % suffixes.len()];
            set.insert(format!("{prefix}{host}{suffix}"));
        }
    }
    // Control characters anywhere: at every position of a few base payloads.
    for (base, positions) in [("//evil.example/", usize::MAX), ("javascript:alert(1)", 12)] {
        let boundaries: Vec<usize> = (0..=base.len())
            .filter(|index| base.is_char_boundary(*index))
            .take(positions)
            .collect();
        for control in controls() {
            for index in &boundaries {
                set.insert(format!("{}{control}{}", &base[..*index], &base[*index..]));
            }
        }
    }
    set.extend(script_payloads());
    set.extend(handwritten(own_host, allowed_host));
    set.into_iter().collect()
}
