//! Reaching an upstream: the TCP connection, and for https the TLS
//! handshake with the trust a route asks for; the connection either way
//! ([`Stream`]).
//!
//! Certificates are checked against the built-in (webpki) roots, plus a
//! route's `upstream_ca_file` when it has one; the name checked, and sent
//! as SNI, is the upstream URL's host. A refused certificate is its own
//! error ([`UpstreamError::Certificate`]) saying why, so the 502 page and
//! the log name the cause (unknown issuer, wrong name, expired) rather than
//! a bare handshake failure.
//!
//! Each route gets two connectors: one offering only `http/1.1` by ALPN,
//! for the HTTP/1.1 client's own connections, and one offering `h2` and
//! `http/1.1`, for finding out whether the upstream speaks HTTP/2.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::UpstreamError;
use crate::config::UpstreamCa;
use crate::fasthash::FastMap;

/// An upstream connection, plain or TLS.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// False once the upstream has closed the connection (or sent anything
    /// while it was idle, which leaves it unusable too). No system call
    /// unless the socket has signalled something since the last read.
    pub(super) fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.tcp().try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(context, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(context, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(context, data),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(context, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(context),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(context),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(context),
        }
    }
}

/// The two TLS connectors of one upstream.
#[derive(Clone)]
pub(super) struct Connectors {
    /// ALPN `http/1.1` only.
    pub http1: TlsConnector,
    /// ALPN `h2`, then `http/1.1`.
    pub negotiating: TlsConnector,
}

impl Connectors {
    fn new(extra: &[CertificateDer<'static>]) -> Result<Connectors, UpstreamError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in extra {
            roots
                .add(certificate.clone())
                .map_err(|error| UpstreamError::Request(format!("upstream_ca_file: {error}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| UpstreamError::Request(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http1 = config.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut negotiating = config;
        negotiating.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Connectors {
            http1: TlsConnector::from(Arc::new(http1)),
            negotiating: TlsConnector::from(Arc::new(negotiating)),
        })
    }
}

/// An origin's extra certificates, and the connectors made with them.
type WithCa = (Arc<[CertificateDer<'static>]>, Connectors);

/// The connectors of every upstream: the built-in roots' for most, one
/// pair per origin whose routes add a CA (made on first use, and again when
/// a reload brings other certificates).
pub(super) struct TlsConnectors {
    default: Connectors,
    with_ca: Mutex<FastMap<Arc<str>, WithCa>>,
}

impl TlsConnectors {
    pub fn new() -> Result<TlsConnectors, UpstreamError> {
        Ok(TlsConnectors {
            default: Connectors::new(&[])?,
            with_ca: Mutex::new(FastMap::default()),
        })
    }

    /// The HTTP/1.1 connector trusting the built-in roots only.
    pub fn default_http1(&self) -> &TlsConnector {
        &self.default.http1
    }

    /// The connectors for `origin`, trusting `ca` too when given.
    pub fn for_upstream(
        &self,
        origin: &Arc<str>,
        ca: Option<&UpstreamCa>,
    ) -> Result<Connectors, UpstreamError> {
        let Some(ca) = ca else {
            return Ok(self.default.clone());
        };
        let mut with_ca = self
            .with_ca
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((certificates, connectors)) = with_ca.get(origin) {
            if Arc::ptr_eq(certificates, &ca.certificates) {
                return Ok(connectors.clone());
            }
        }
        let connectors = Connectors::new(&ca.certificates)?;
        with_ca.insert(
            origin.clone(),
            (ca.certificates.clone(), connectors.clone()),
        );
        Ok(connectors)
    }
}

/// A TCP connection to `upstream`'s host and port (no timeout of its own:
/// callers bound the whole of connecting).
pub(crate) async fn connect_tcp(upstream: &Url) -> Result<TcpStream, UpstreamError> {
    let port = upstream
        .port_or_known_default()
        .or_else(|| (upstream.scheme() == "h2c").then_some(80))
        .ok_or_else(|| unreachable(upstream, "no port for", &"unknown scheme"))?;
    let host = upstream
        .host()
        .ok_or_else(|| unreachable(upstream, "no host for", &"the URL has none"))?;
    let connected = match &host {
        url::Host::Domain(domain) => TcpStream::connect((*domain, port)).await,
        url::Host::Ipv4(ip) => TcpStream::connect((*ip, port)).await,
        url::Host::Ipv6(ip) => TcpStream::connect((*ip, port)).await,
    };
    let tcp = connected.map_err(|error| unreachable(upstream, "connecting to", &error))?;
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on an upstream connection");
    }
    Ok(tcp)
}

/// The TLS handshake with `upstream` over `tcp`: SNI and the name checked
/// are the URL's host (an IP address is checked as one, without SNI).
pub(crate) async fn handshake(
    connector: &TlsConnector,
    upstream: &Url,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let name = match upstream.host() {
        Some(url::Host::Domain(domain)) => ServerName::try_from(domain.to_owned())
            .map_err(|error| unreachable(upstream, "no TLS name for", &error))?,
        Some(url::Host::Ipv4(ip)) => ServerName::from(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => ServerName::from(std::net::IpAddr::V6(ip)),
        None => return Err(unreachable(upstream, "no host for", &"the URL has none")),
    };
    connector.connect(name, tcp).await.map_err(|error| {
        let refused = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|error| match error {
                rustls::Error::InvalidCertificate(reason) => Some(reason),
                _ => None,
            });
        match refused {
            Some(reason) => UpstreamError::Certificate(certificate_problem(
                reason,
                upstream.host_str().unwrap_or_default(),
            )),
            None => unreachable(upstream, "TLS handshake with", &error),
        }
    })
}

/// Why a certificate was refused, in words an operator can act on.
pub(super) fn certificate_problem(reason: &CertificateError, host: &str) -> String {
    match reason {
        CertificateError::UnknownIssuer => "it is not signed by an authority portico trusts \
             (unknown issuer; a private CA goes in the route's upstream_ca_file)"
            .to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("it is not valid for the name {host}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".to_owned()
        }
        other => format!("{other:?}"),
    }
}

fn unreachable(upstream: &Url, what: &str, error: &dyn std::fmt::Display) -> UpstreamError {
    UpstreamError::Unreachable(format!(
        "{what} {}: {error}",
        crate::config::upstream_origin(upstream)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_say_what_to_do() {
        let unknown = certificate_problem(&CertificateError::UnknownIssuer, "app.internal");
        assert!(unknown.contains("upstream_ca_file"), "{unknown}");
        let name = certificate_problem(&CertificateError::NotValidForName, "app.internal");
        assert_eq!(name, "it is not valid for the name app.internal");
        assert_eq!(
            certificate_problem(&CertificateError::Expired, "x"),
            "it has expired"
        );
    }

    #[test]
    fn connectors_with_a_ca_are_made_once_per_origin_and_certificates() {
        let connectors = TlsConnectors::new().unwrap();
        let origin: Arc<str> = "https://app.internal".into();
        let ca = UpstreamCa {
            path: "/ca.pem".into(),
            certificates: Arc::from(Vec::new()),
        };
        let first = connectors.for_upstream(&origin, Some(&ca)).unwrap();
        let again = connectors.for_upstream(&origin, Some(&ca)).unwrap();
        assert!(Arc::ptr_eq(first.http1.config(), again.http1.config()));
        let reloaded = UpstreamCa {
            certificates: Arc::from(Vec::new()),
            ..ca.clone()
        };
        let other = connectors.for_upstream(&origin, Some(&reloaded)).unwrap();
        assert!(!Arc::ptr_eq(first.http1.config(), other.http1.config()));
        let plain = connectors.for_upstream(&origin, None).unwrap();
        assert_eq!(plain.http1.config().alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(
            plain.negotiating.config().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
