//! Return URLs (`rd`, the page first asked for): whatever is accepted lands
//! on portico's own origin or an allow-listed host, over http(s).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico::redirect::ReturnUrlPolicy;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(candidate) = std::str::from_utf8(data) else {
        return;
    };
    let public = Url::parse("https://portico.example.com/").expect("a valid URL");
    let allowed = vec!["docs.example.com".to_owned(), ".apps.example.com".to_owned()];
    let policy = ReturnUrlPolicy::new(&public, &allowed);
    if let Some(target) = policy.check(candidate) {
        assert_eq!(target.scheme(), "https");
        let host = target.host_str().unwrap_or_default();
        assert!(
            host == "portico.example.com"
                || host == "docs.example.com"
                || host == "apps.example.com"
                || host.ends_with(".apps.example.com"),
            "{candidate:?} → {target}"
        );
        assert!(target.username().is_empty() && target.password().is_none());
    }
});
