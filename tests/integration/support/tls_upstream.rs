//! https upstreams for the tests: a private certificate authority made at
//! run time with the openssl CLI, leaf certificates it signs, and a hyper
//! server behind rustls (HTTP/1.1, or HTTP/2 when ALPN picks it) that
//! answers with what it saw: protocol, SNI, path, identity headers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::programs;

/// A certificate authority of the test's own, in a fresh directory.
pub struct PrivateCa {
    directory: PathBuf,
    /// The CA's certificate (PEM): what `upstream_ca_file` names.
    pub cert: PathBuf,
    key: PathBuf,
}

fn openssl(arguments: &[&str]) {
    let made = std::process::Command::new("openssl")
        .args(arguments)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl {arguments:?}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

impl PrivateCa {
    pub fn new(name: &str) -> PrivateCa {
        programs::require("openssl", "openssl");
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "portico-ca-{}-{name}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&directory).expect("CA directory");
        let cert = directory.join("ca.pem");
        let key = directory.join("ca.key");
        let subject = format!("/CN=portico test CA {name}");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &subject,
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            text(&key),
            "-out",
            text(&cert),
        ]);
        PrivateCa {
            directory,
            cert,
            key,
        }
    }

    /// A server certificate for `names` (DNS names, or IP addresses), signed
    /// by this CA: (certificate path, key path).
    pub fn leaf(&self, label: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let cert = self.directory.join(format!("{label}.pem"));
        let key = self.directory.join(format!("{label}.key"));
        let request = self.directory.join(format!("{label}.csr"));
        let extensions = self.directory.join(format!("{label}.ext"));
        let alt_names: Vec<String> = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{name}"),
                Err(_) => format!("DNS:{name}"),
            })
            .collect();
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                alt_names.join(",")
            ),
        )
        .expect("extensions file");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={}", names[0]),
            "-keyout",
            text(&key),
            "-out",
            text(&request),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            text(&request),
            "-CA",
            text(&self.cert),
            "-CAkey",
            text(&self.key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            text(&extensions),
            "-out",
            text(&cert),
        ]);
        (cert, key)
    }
}

impl Drop for PrivateCa {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.directory).ok();
    }
}

/// One request as the https upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which TLS connection carried it (0, 1, …).
    pub connection: usize,
    pub version: http::Version,
    /// The name the client sent by SNI.
    pub sni: Option<String>,
    pub path: String,
    pub user: Option<String>,
}

/// An https server answering `{version:?} {path} user={x-forwarded-user}
/// body={the request body}`.
pub struct TlsUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    handshakes: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// Serves with the certificate and key, offering `alpn` (e.g. `h2` and
    /// `http/1.1`, or `http/1.1` alone).
    pub async fn start(cert: &Path, key: &Path, alpn: &[&[u8]]) -> TlsUpstream {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = TlsUpstream {
            port,
            seen: Arc::default(),
            handshakes: Arc::default(),
        };
        let (seen, handshakes) = (upstream.seen.clone(), upstream.handshakes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, handshakes) =
                    (acceptor.clone(), seen.clone(), handshakes.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let connection = handshakes.fetch_add(1, Ordering::SeqCst);
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let user = request
                                .headers()
                                .get("x-forwarded-user")
                                .and_then(|value| value.to_str().ok())
                                .map(str::to_string);
                            let seen_now = Seen {
                                connection,
                                version: request.version(),
                                sni: sni.clone(),
                                path: request.uri().path().to_string(),
                                user: user.clone(),
                            };
                            seen.lock().unwrap().push(seen_now.clone());
                            async move {
                                let body = axum::body::Body::new(request.into_body());
                                let received = axum::body::to_bytes(body, 1 << 20)
                                    .await
                                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                                    .unwrap_or_else(|error| format!("<broken: {error}>"));
                                let answer = format!(
                                    "{:?} {} user={} body={received}",
                                    seen_now.version,
                                    seen_now.path,
                                    user.unwrap_or_default()
                                );
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    axum::body::Body::from(answer),
                                ))
                            }
                        },
                    );
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        upstream
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// TLS connections that completed their handshake.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}
