//! A small HTTP CONNECT proxy on loopback (a test double: it answers `CONNECT host:port`,
//! then copies bytes both ways), and a TLS front that serves a plain-HTTP server over HTTPS
//! with the test CA of `tests/fixtures/tls`.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional},
    net::{TcpListener, TcpStream},
};

/// How the proxy answers a `CONNECT`.
#[derive(Clone, Debug)]
pub enum ProxyMode {
    /// Opens every tunnel.
    Open,
    /// Opens a tunnel only with exactly this `Proxy-Authorization` value; else 407.
    RequireAuth(String),
    /// Answers every CONNECT with this status (403, 502, ...).
    Refuse(u16),
}

/// One CONNECT the proxy received.
#[derive(Clone, Debug)]
pub struct ConnectSeen {
    /// `host:port` of the request line.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
    /// Whether a tunnel was opened.
    pub opened: bool,
}

pub struct ConnectProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<ConnectSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start(mode: ProxyMode) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, mode.clone(), log.clone()));
            }
        });
        ConnectProxy { addr, seen, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every CONNECT received, in order.
    pub fn seen(&self) -> Vec<ConnectSeen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many tunnels were opened.
    pub fn tunnels(&self) -> usize {
        self.seen().iter().filter(|c| c.opened).count()
    }
}

async fn serve(mut client: TcpStream, mode: ProxyMode, log: Arc<Mutex<Vec<ConnectSeen>>>) {
    // The request head, byte by byte so nothing after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    let refuse = match (&mode, method) {
        (_, m) if m != "CONNECT" => Some(405),
        (ProxyMode::Open, _) => None,
        (ProxyMode::RequireAuth(expected), _) => {
            (authorization.as_deref() != Some(expected.as_str())).then_some(407)
        }
        (ProxyMode::Refuse(status), _) => Some(*status),
    };
    let upstream = match refuse {
        Some(_) => None,
        None => TcpStream::connect(target).await.ok(),
    };
    log.lock().unwrap().push(ConnectSeen {
        target: target.to_owned(),
        authorization,
        opened: upstream.is_some(),
    });
    let Some(mut upstream) = upstream else {
        let status = refuse.unwrap_or(502);
        let extra = if status == 407 {
            "Proxy-Authenticate: Basic realm=\"test\"\r\n"
        } else {
            ""
        };
        let answer = format!("HTTP/1.1 {status} Refused\r\n{extra}Content-Length: 0\r\n\r\n");
        let _ = client.write_all(answer.as_bytes()).await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Serves `backend` (a plain-HTTP server) over HTTPS on 127.0.0.1, with the certificate
/// for `localhost` and `127.0.0.1` that `tests/fixtures/tls/ca.pem` signed.
pub struct TlsFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fixtures_tls() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls"))
}

impl TlsFront {
    pub async fn start(backend: SocketAddr) -> TlsFront {
        use tokio_rustls::rustls::{
            self,
            pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        };
        let tls = fixtures_tls();
        let certs = CertificateDer::pem_file_iter(tls.join("localhost.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(tls.join("localhost.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(backend).await {
                        let _ = copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        TlsFront { addr, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The test CA of `tests/fixtures/tls` as a root store.
pub fn test_ca_roots() -> veracity_auth::rustls::RootCertStore {
    use veracity_auth::rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = veracity_auth::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures_tls().join("ca.pem")).unwrap())
        .unwrap();
    roots
}
