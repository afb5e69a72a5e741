//! A route's upstream: its URL and, for https, the extra authorities it is
//! trusted by.
//!
//! `http://` and `https://` upstreams are spoken to in HTTP/1.1, or in
//! HTTP/2 when an https upstream picks it by ALPN; `h2c://` is HTTP/2 in
//! clear text with prior knowledge (a gRPC server without TLS, say).
//! `upstream_ca_file` is read here, like the `*_file` secrets, so that a
//! missing or broken CA bundle is found by `portico check`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use url::Url;

use super::errors::{quoted, Problems};
use super::types::UpstreamCa;

const UPSTREAM_FIX: &str = "write an absolute URL such as \"http://127.0.0.1:9100\", \
                            \"https://app.internal\" or, for HTTP/2 without TLS (a gRPC \
                            server, say), \"h2c://127.0.0.1:50051\"";

/// `routes[i].upstream`: an absolute http, https or h2c URL with a host.
pub(crate) fn upstream_url(problems: &mut Problems, key: &str, text: &str) -> Option<Url> {
    let problem = match Url::parse(text) {
        _ if text.is_empty() => "is required".to_owned(),
        Err(error) => format!("is not an absolute URL ({error})"),
        Ok(url) if !matches!(url.scheme(), "http" | "https" | "h2c") => {
            format!("must be an http, https or h2c URL, not {}", url.scheme())
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => "has no host".to_owned(),
        Ok(url) => return Some(url),
    };
    problems.report(key, quoted(text), problem, UPSTREAM_FIX);
    None
}

/// `routes[i].upstream_ca_file`: PEM certificates, only for an https
/// upstream. `Some(None)` when the key is not set; `None` after a problem.
pub(crate) fn upstream_ca(
    problems: &mut Problems,
    key: &str,
    file: &str,
    upstream: Option<&Url>,
) -> Option<Option<UpstreamCa>> {
    let file = file.trim();
    if file.is_empty() {
        return Some(None);
    }
    if let Some(upstream) = upstream {
        if upstream.scheme() != "https" {
            problems.report(
                key,
                quoted(file),
                format!(
                    "only an https upstream is verified with a CA, and this route's is {}",
                    upstream.scheme()
                ),
                "remove upstream_ca_file, or make the upstream an https:// URL",
            );
            return None;
        }
    }
    match read_certificates(file) {
        Ok(certificates) => Some(Some(UpstreamCa {
            path: PathBuf::from(file),
            certificates: certificates.into(),
        })),
        Err(problem) => {
            problems.report(
                key,
                quoted(file),
                problem,
                "point it to a PEM file holding the certificate of the authority that \
                 signed the upstream's certificate (-----BEGIN CERTIFICATE-----)",
            );
            None
        }
    }
}

/// The certificates of a PEM file, each one usable as a trust anchor.
fn read_certificates(file: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .and_then(|items| items.collect::<Result<_, _>>())
        .map_err(|error| format!("cannot be read as PEM: {error}"))?;
    if certificates.is_empty() {
        return Err("holds no certificate".to_owned());
    }
    let mut store = rustls::RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        store
            .add(certificate.clone())
            .map_err(|error| format!("certificate {} is not usable: {error}", index + 1))?;
    }
    Ok(certificates)
}

/// Routes to one upstream share its connections, so they must trust the
/// same authorities: two `upstream_ca_file`s for one origin are refused.
pub(crate) fn one_trust_per_origin(problems: &mut Problems, routes: &[(Arc<str>, Option<&str>)]) {
    let mut first: BTreeMap<&str, (usize, Option<&str>)> = BTreeMap::new();
    for (index, (origin, ca_file)) in routes.iter().enumerate() {
        match first.get(&**origin) {
            None => {
                first.insert(origin, (index, *ca_file));
            }
            Some((other, other_ca)) if other_ca != ca_file => problems.report(
                format!("routes[{index}].upstream_ca_file"),
                quoted(ca_file.unwrap_or_default()),
                format!(
                    "routes[{other}] goes to the same upstream ({origin}) with \
                     upstream_ca_file = {}, and routes to one upstream share its connections",
                    quoted(other_ca.unwrap_or_default())
                ),
                "give every route to this upstream the same upstream_ca_file",
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(problems: Problems) -> String {
        let errors = problems.into_errors();
        assert!(!errors.is_empty(), "a problem was reported");
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn checked(text_in: &str) -> Result<Url, String> {
        let mut problems = Problems::default();
        upstream_url(&mut problems, "routes[0].upstream", text_in).ok_or_else(|| text(problems))
    }

    #[test]
    fn http_https_and_h2c_upstreams_are_accepted() {
        for text in [
            "http://127.0.0.1:9100",
            "https://app.internal/base/",
            "h2c://127.0.0.1:50051",
            "h2c://grpc.internal:8080/prefix",
        ] {
            assert!(checked(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn other_upstreams_are_refused_naming_key_value_and_fix() {
        let error = checked("grpc://127.0.0.1:50051").unwrap_err();
        assert!(error.contains("routes[0].upstream"), "{error}");
        assert!(error.contains("\"grpc://127.0.0.1:50051\""), "{error}");
        assert!(
            error.contains("must be an http, https or h2c URL"),
            "{error}"
        );
        assert!(error.contains("h2c://127.0.0.1:50051"), "the fix: {error}");
        assert!(checked("h2c:///no-host").is_err());
        assert!(checked("").unwrap_err().contains("is required"));
    }

    #[test]
    fn a_ca_file_needs_an_https_upstream_and_a_readable_certificate() {
        let mut problems = Problems::default();
        let h2c = Url::parse("h2c://127.0.0.1:1").unwrap();
        assert!(upstream_ca(
            &mut problems,
            "routes[0].upstream_ca_file",
            "/x.pem",
            Some(&h2c)
        )
        .is_none());
        let https = Url::parse("https://app.internal").unwrap();
        let missing = "/nonexistent/portico-ca.pem";
        assert!(upstream_ca(
            &mut problems,
            "routes[1].upstream_ca_file",
            missing,
            Some(&https)
        )
        .is_none());
        let not_pem = std::env::temp_dir().join(format!("portico-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let not_pem_text = not_pem.to_string_lossy().into_owned();
        assert!(upstream_ca(
            &mut problems,
            "routes[2].upstream_ca_file",
            &not_pem_text,
            Some(&https)
        )
        .is_none());
        std::fs::remove_file(&not_pem).ok();
        assert!(upstream_ca(
            &mut problems,
            "routes[3].upstream_ca_file",
            " ",
            Some(&https)
        )
        .is_some_and(|ca| ca.is_none()));
        let text = text(problems);
        assert!(
            text.contains("routes[0].upstream_ca_file = \"/x.pem\": only an https upstream"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "routes[1].upstream_ca_file = \"{missing}\": cannot be read"
            )),
            "{text}"
        );
        assert!(
            text.contains("routes[2].upstream_ca_file") && text.contains("holds no certificate"),
            "{text}"
        );
        assert!(text.contains("fix: point it to a PEM file"), "{text}");
    }

    #[test]
    fn routes_to_one_upstream_must_trust_the_same_authorities() {
        let mut problems = Problems::default();
        let origin: Arc<str> = "https://app.internal".into();
        let other: Arc<str> = "https://other.internal".into();
        one_trust_per_origin(
            &mut problems,
            &[
                (origin.clone(), Some("/a.pem")),
                (other, None),
                (origin.clone(), Some("/a.pem")),
                (origin, None),
            ],
        );
        let text = text(problems);
        assert!(
            text.contains("routes[3].upstream_ca_file = \"\": routes[0] goes to the same upstream"),
            "{text}"
        );
        assert!(!text.contains("routes[2]"), "{text}");
    }
}
