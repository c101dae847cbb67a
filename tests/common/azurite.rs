//! Azurite, Microsoft's Azure Storage emulator (npm `azurite`, pinned to 3.35.0 in
//! `.ci/azurite/`, the last release for Node.js 20): its blob service on `127.0.0.1`, one per
//! test, killed on drop.
//!
//! It runs with `--inMemoryPersistence` (nothing written to disk), `--disableTelemetry`
//! (without it, it calls the internet) and `--skipApiVersionCheck`; `--blobPort 0` lets it
//! pick a free port, which it prints (`Azurite Blob service successfully listens on
//! http://127.0.0.1:PORT`). Its account is the emulator's `devstoreaccount1`, URLs are
//! path-style: `http://127.0.0.1:PORT/devstoreaccount1/<container>/<blob>`.
//!
//! The binary is `$AZURITE_BLOB` (`.ci/run` exports it), else
//! `.ci/azurite/node_modules/.bin/azurite-blob`, which `npm ci` installs once when npm is
//! present. Tests that need it are `#[ignore]`d: `cargo test --all-features` passes with Rust
//! alone; once included they never skip, they fail saying how to install it.
//!
//! [`Front`] stands between a storage client and Azurite and records what reached Azurite
//! with a SAS: each request's status, and whether its `se=` had passed when it arrived.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use super::npm::{NodeServer, install_hint, package_file, port_of};

/// A running Azurite blob service; killed on drop.
pub struct Azurite {
    _server: NodeServer,
    port: u16,
}

impl Azurite {
    /// Starts Azurite's blob service on `127.0.0.1` at a port of its choosing, and returns
    /// once it reports that it listens. Blocking: call it off the runtime's workers
    /// ([`Azurite::spawn`]).
    pub fn start() -> Azurite {
        let binary = package_file(
            "azurite",
            "node_modules/.bin/azurite-blob",
            Some("AZURITE_BLOB"),
        );
        let mut command = Command::new(binary);
        command
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ])
            .current_dir(std::env::temp_dir());
        let mut port = None;
        let server = NodeServer::start(command, &install_hint("azurite"), |line| {
            let url = line.strip_prefix("Azurite Blob service successfully listens on ");
            port = url.map(|url| port_of(url).unwrap_or_else(|| panic!("no port in {line:?}")));
            port.is_some()
        });
        Azurite {
            _server: server,
            port: port.unwrap(),
        }
    }

    /// [`Azurite::start`] on a blocking thread.
    pub async fn spawn() -> Azurite {
        tokio::task::spawn_blocking(Azurite::start)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// `http://127.0.0.1:PORT`, what `MockBuilder::storage_emulator` takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The dev account's URL, `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("{}/devstoreaccount1", self.url())
    }
}

/// What reached Azurite through a [`Front`] signed with a SAS (a `sig=` in the query).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SasTraffic {
    /// Requests carrying a SAS.
    pub requests: u64,
    /// Of those, the ones Azurite refused with `403`.
    pub refused: u64,
    /// Of those, the ones whose `se=` had already passed when they arrived (or was
    /// unreadable).
    pub expired_on_arrival: u64,
}

/// One request that reached Azurite through a [`Front`], as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// `GET`, `HEAD`, `PUT`, …
    pub method: http::Method,
    /// The URI's path, percent-decoded: `/devstoreaccount1/<container>/<blob>`, or
    /// `/devstoreaccount1/<container>` for a listing.
    pub path: String,
    /// A listing: `comp=list` in the query.
    pub list: bool,
    /// The `prefix` query parameter (a listing's), percent-decoded.
    pub prefix: Option<String>,
    /// Whether it carried a SAS (a `sig=` in the query).
    pub sas: bool,
}

/// A plain HTTP/1 front for Azurite on its own loopback port: forwards every request
/// unchanged (Azurite's SAS and SharedKey signatures do not cover the host) and records
/// [`SasTraffic`]. Point `MockBuilder::storage_emulator` at [`Front::url`] and every SAS the
/// mock hands out, and every request a storage client sends with it, goes through here.
/// Stops when dropped.
#[cfg(feature = "default-client")]
pub struct Front {
    addr: std::net::SocketAddr,
    traffic: Arc<Mutex<SasTraffic>>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "default-client")]
impl Front {
    /// A front forwarding to `azurite`.
    pub async fn start(azurite: &Azurite) -> Front {
        use hyper::body::Incoming;
        use hyper_util::{client::legacy::Client, rt::TokioExecutor, rt::TokioIo};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let traffic: Arc<Mutex<SasTraffic>> = Arc::default();
        let record = traffic.clone();
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let log = seen.clone();
        let upstream = azurite.url();
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, upstream, client) = (record.clone(), upstream.clone(), client.clone());
                let log = log.clone();
                let service =
                    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                        let (record, client) = (record.clone(), client.clone());
                        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                        let se = sas_expiry(request.uri().query().unwrap_or(""));
                        log.lock()
                            .unwrap()
                            .push(SeenRequest::of(&request, se.is_some()));
                        *request.uri_mut() = format!("{upstream}{path}").parse().unwrap();
                        async move {
                            let arrived = SystemTime::now();
                            let response = client.request(request).await?;
                            if let Some(se) = se {
                                let mut traffic = record.lock().unwrap();
                                traffic.requests += 1;
                                traffic.refused +=
                                    u64::from(response.status() == http::StatusCode::FORBIDDEN);
                                // A `se=` this cannot read counts as expired: a bug here shows.
                                traffic.expired_on_arrival +=
                                    u64::from(se.is_none_or(|se| arrived > se));
                            }
                            Ok::<_, hyper_util::client::legacy::Error>(response)
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Front {
            addr,
            traffic,
            seen,
            task,
        }
    }

    /// Every request that reached the front so far, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT`, what `MockBuilder::storage_emulator` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The dev account's URL through the front, `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("{}/devstoreaccount1", self.url())
    }

    /// What reached Azurite with a SAS so far.
    pub fn traffic(&self) -> SasTraffic {
        *self.traffic.lock().unwrap()
    }
}

#[cfg(feature = "default-client")]
impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SeenRequest {
    fn of<B>(request: &http::Request<B>, sas: bool) -> SeenRequest {
        let query = request.uri().query().unwrap_or("");
        let pairs = || query.split('&').filter_map(|pair| pair.split_once('='));
        let prefix =
            pairs().find_map(|(key, value)| (key == "prefix").then(|| percent_decode(value)));
        SeenRequest {
            method: request.method().clone(),
            path: percent_decode(request.uri().path()),
            list: pairs().any(|pair| pair == ("comp", "list")),
            prefix,
            sas,
        }
    }
}

/// `%XX` escapes decoded; invalid ones kept as they are.
fn percent_decode(s: &str) -> String {
    let (bytes, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
    while i < bytes.len() {
        let hex = |at: usize| (*bytes.get(at)? as char).to_digit(16);
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `None` for a query without `sig=` (not a SAS); else `Some(se=)`, `Some(None)` when its
/// `se=` is missing or unreadable.
fn sas_expiry(query: &str) -> Option<Option<SystemTime>> {
    let mut sig = false;
    let mut se = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sig" => sig = true,
            "se" => se = parse_se(&value.replace("%3A", ":").replace("%3a", ":")),
            _ => {}
        }
    }
    sig.then_some(se)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as a SAS writes `se=`.
fn parse_se(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let num = |t: &str| t.parse::<i64>().ok();
    let mut d = date.split('-').map(num);
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(num);
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
