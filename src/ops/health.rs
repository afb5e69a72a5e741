//! `portico health`: asks a running portico's `/readyz` and turns the answer
//! into an exit code, so a container healthcheck needs no curl in the image.
//!
//! Ready means what `/readyz` means: a 200 whose JSON says `"ready": true`
//! (provider metadata loaded, session store answering, not shutting down).
//! Anything else — another status, another body, no answer within the
//! timeout — is not ready, with one line saying why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;

/// Where `portico health` asks when given no URL and no config.
pub const DEFAULT_URL: &str = "http://127.0.0.1:4180/readyz";

/// How long the probe waits for the whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HealthError {
    #[error(
        "{0:?} is not an http(s) URL (e.g. http://127.0.0.1:4180 or http://127.0.0.1:4180/readyz)"
    )]
    BadUrl(String),
    #[error("no answer from {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}: not ready ({body})")]
    NotReady {
        url: String,
        status: u16,
        body: String,
    },
}

/// The `/readyz` URL for what the user typed: a base URL gets `/readyz`
/// appended, a URL with a path is used as it is.
pub fn readyz_url(text: &str) -> Result<Url, HealthError> {
    let bad = || HealthError::BadUrl(text.to_owned());
    let mut url = Url::parse(text).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/readyz");
    }
    Ok(url)
}

/// The `/readyz` URL of a portico listening on `listen`: an unspecified
/// address (0.0.0.0, ::) is asked on loopback.
pub fn readyz_url_for_listen(listen: SocketAddr, https: bool) -> Result<Url, HealthError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if https { "https" } else { "http" };
    readyz_url(&format!(
        "{scheme}://{}/readyz",
        SocketAddr::new(ip, listen.port())
    ))
}

/// Ready or not, from `/readyz`'s status and body.
pub fn verdict(url: &Url, status: u16, body: &[u8]) -> Result<(), HealthError> {
    let ready = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("ready").and_then(serde_json::Value::as_bool))
        == Some(true);
    if status == 200 && ready {
        return Ok(());
    }
    let mut shown: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|character| !character.is_control())
        .take(300)
        .collect();
    if shown.is_empty() {
        shown = "empty body".to_owned();
    }
    Err(HealthError::NotReady {
        url: url.to_string(),
        status,
        body: shown,
    })
}

/// Asks `url` once. A loopback https URL is asked without checking its
/// certificate: this probes our own process, often with a private one.
pub async fn probe(url: &Url) -> Result<(), HealthError> {
    let unreachable = |reason: String| HealthError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(TIMEOUT)
        .danger_accept_invalid_certs(loopback)
        .build()
        .map_err(|error| unreachable(error.to_string()))?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|error| unreachable(error_chain(&error)))?;
    verdict(url, status, &body)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_readyz_and_a_full_one_is_kept() {
        assert_eq!(
            readyz_url("http://127.0.0.1:4180").unwrap().as_str(),
            "http://127.0.0.1:4180/readyz"
        );
        assert_eq!(
            readyz_url("http://portico:4180/").unwrap().as_str(),
            "http://portico:4180/readyz"
        );
        assert_eq!(
            readyz_url("https://127.0.0.1:8443/custom/readyz")
                .unwrap()
                .as_str(),
            "https://127.0.0.1:8443/custom/readyz"
        );
        for bad in ["127.0.0.1:4180", "ftp://x/", "not a url", ""] {
            assert!(
                matches!(readyz_url(bad), Err(HealthError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_unspecified_listen_address_is_asked_on_loopback() {
        let url = readyz_url_for_listen("0.0.0.0:4180".parse().unwrap(), false).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4180/readyz");
        let url = readyz_url_for_listen("[::]:443".parse().unwrap(), true).unwrap();
        assert_eq!(url.as_str(), "https://[::1]/readyz");
        let url = readyz_url_for_listen("10.1.2.3:4180".parse().unwrap(), false).unwrap();
        assert_eq!(url.as_str(), "http://10.1.2.3:4180/readyz");
    }

    #[test]
    fn ready_needs_a_200_that_says_ready() {
        let url = readyz_url(DEFAULT_URL).unwrap();
        assert_eq!(verdict(&url, 200, br#"{"ready":true}"#), Ok(()));
        let not_ready = verdict(
            &url,
            503,
            br#"{"ready":false,"provider_metadata":true,"session_store":false}"#,
        )
        .unwrap_err();
        assert!(not_ready.to_string().contains("503"), "{not_ready}");
        assert!(
            not_ready.to_string().contains("session_store"),
            "{not_ready}"
        );
        // Another server on the port answering 200 is not a ready portico.
        assert!(verdict(&url, 200, b"ok").is_err());
        assert!(verdict(&url, 200, br#"{"ready":false}"#).is_err());
        assert!(verdict(&url, 200, b"").is_err());
    }
}
