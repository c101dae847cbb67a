//! `veracity-auth proxy` in front of the mock on 127.0.0.1, driven in-process through
//! `veracity_auth_cli::proxy::serve`: a hyper client (always), curl and Python's
//! `urllib.request` (ignored unless installed: `.ci/run` runs them).

use std::{
    convert::Infallible,
    io::{self, Write},
    pin::Pin,
    process::Command,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use veracity_auth::{Authenticator, ClientCredentials, StaticToken, TokenEndpoint};
use veracity_auth_cli::proxy::{ProxyArgs, ProxyError, ProxyOptions, SECRET_HEADER, run, serve};
use veracity_auth_mock::{Fault, MockVeracity, Times};

const FIVE_MB: usize = 5 * 1024 * 1024;

// === set-up ===

/// What the proxy wrote to its log, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A proxy serving on a free loopback port until dropped.
struct Running {
    url: String,
    log: Log,
    authenticator: Authenticator,
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<Result<(), ProxyError>>,
}

fn mock_authenticator(mock: &MockVeracity) -> Authenticator {
    Authenticator::builder(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
    )
    .api_key(mock.api_key())
    .origins([mock.url()])
    .build()
    .unwrap()
}

async fn recording_mock() -> MockVeracity {
    MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap()
}

async fn proxy(authenticator: Authenticator, gateway: &str, options: ProxyOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Log::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        authenticator.clone(),
        gateway.parse().unwrap(),
        options.log_to(log.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        url,
        log,
        authenticator,
        _stop: stop,
        _task: task,
    }
}

async fn proxy_for(mock: &MockVeracity, options: ProxyOptions) -> Running {
    proxy(mock_authenticator(mock), &mock.api_url(), options).await
}

/// The mock saw the key and a bearer token on every gateway request, and refused none for a
/// missing or wrong one.
fn assert_credentials_on_every_request(mock: &MockVeracity) {
    let requests: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.had_token && r.had_key, "{} {}", r.method, r.path);
    }
    let stats = mock.stats();
    assert_eq!(stats.rejected_missing_key, 0);
    assert_eq!(stats.rejected_wrong_key, 0);
    assert_eq!(stats.rejected_missing_token, 0);
    assert_eq!(stats.rejected_unknown_token, 0);
}

/// `total` bytes whose byte `i` is `i mod 251` (the mock's `pattern` endpoints), in 64 KiB
/// chunks with no size hint: sent chunked, as a streamed upload.
struct Pattern {
    sent: usize,
    total: usize,
}

fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn pattern(total: usize) -> Vec<u8> {
    (0..total).map(pattern_byte).collect()
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let n = (self.total - self.sent).min(64 * 1024);
        if n == 0 {
            return Poll::Ready(None);
        }
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(chunk.into()))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn client<B>() -> Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(url: String) -> Response<Incoming> {
    client::<Empty<Bytes>>()
        .request(Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap()
}

async fn text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn upload(url: String, total: usize) -> (StatusCode, String) {
    let request = Request::put(url).body(Pattern { sent: 0, total }).unwrap();
    let response = client().request(request).await.unwrap();
    (response.status(), text(response).await)
}

/// Reads a pattern download frame by frame, checking each byte: the number of bytes read.
async fn read_pattern(body: &mut Incoming, mut read: usize, until: usize) -> usize {
    while read < until {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.unwrap().into_data() {
            for (i, b) in data.iter().enumerate() {
                assert_eq!(*b, pattern_byte(read + i), "byte {}", read + i);
            }
            read += data.len();
        }
    }
    read
}

/// Sends `raw` as it is and returns the status line of the answer.
async fn raw_status_line(url: &str, raw: &str) -> String {
    let mut stream = TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// The bearer token the authenticator holds now (the one the proxy sends).
async fn current_token(authenticator: &Authenticator) -> String {
    let mut headers = HeaderMap::new();
    authenticator
        .headers()
        .await
        .unwrap()
        .insert_into(&mut headers);
    let value = headers[AUTHORIZATION].to_str().unwrap();
    value.trim_start_matches("Bearer ").to_owned()
}

// === Rust clients, in-process ===

#[tokio::test]
async fn a_request_gets_the_gateway_answer_with_the_credentials_added() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    // What a client sends as credentials is dropped: the layer's go instead.
    let request = Request::get(format!("{}/workspaces/{}", proxy.url, mock.workspace_id()))
        .header(AUTHORIZATION, "Bearer not-a-token")
        .header("ocp-apim-subscription-key", "not-a-key")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-correlation-id"));
    assert!(text(response).await.contains(mock.workspace_id()));

    let ws = mock.workspace_id();
    let response = get(format!("{}/workspaces/{ws}/ledger?PageSize=2", proxy.url)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(text(response).await.contains("\"pageSize\":2"));

    assert_credentials_on_every_request(&mock);
    assert_eq!(mock.stats().token_requests, 1);
    let log = proxy.log.text();
    assert!(log.contains(&format!("GET /workspaces/{ws} 200 ")), "{log}");
    assert!(
        log.contains(&format!("GET /workspaces/{ws}/ledger 200 ")),
        "{log}"
    );
    assert!(!log.contains("PageSize"), "the query is not logged: {log}");
}

#[tokio::test]
async fn five_megabytes_stream_up_and_down_intact() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    let url = format!("{}/workspaces/{}/pattern", proxy.url, mock.workspace_id());

    let (status, answer) = upload(url.clone(), FIVE_MB).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, format!("{{\"bytes\":{FIVE_MB},\"intact\":true}}"));

    let mut response = get(format!("{url}?bytes={FIVE_MB}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        read_pattern(response.body_mut(), 0, usize::MAX).await,
        FIVE_MB
    );
    assert_credentials_on_every_request(&mock);
}

#[tokio::test]
async fn a_revocation_while_a_client_streams_is_never_seen_as_a_401() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    let url = format!("{}/workspaces/{}/pattern", proxy.url, mock.workspace_id());

    let mut download = get(format!("{url}?bytes={FIVE_MB}")).await;
    assert_eq!(download.status(), StatusCode::OK);
    let read = read_pattern(download.body_mut(), 0, 1).await;
    mock.revoke_all_tokens();
    // A second client uploads while the first still downloads: its 401 is replayed (the
    // upload fits the replay cap) with a new token.
    let (status, answer) = upload(url.clone(), 32 * 1024).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("\"intact\":true"), "{answer}");
    assert_eq!(
        read_pattern(download.body_mut(), read, usize::MAX).await,
        FIVE_MB
    );
    let response = get(format!("{}/workspaces/{}", proxy.url, mock.workspace_id())).await;
    assert_eq!(response.status(), StatusCode::OK);

    let stats = mock.stats();
    assert_eq!(stats.rejected_revoked_token, 1);
    assert_eq!(stats.token_requests, 2);
    assert_eq!(proxy.authenticator.stats().replay_refreshes, 1);
    assert!(!proxy.log.text().contains(" 401 "), "{}", proxy.log.text());
    assert_credentials_on_every_request(&mock);
}

#[tokio::test]
async fn a_response_streams_before_the_gateway_has_finished_it() {
    // A gateway of the test's own that sends one chunk and holds the rest until told.
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<HeaderMap>();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            seen_tx.send(request.headers().clone()).unwrap();
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            tx.try_send(Bytes::from_static(b"first ")).unwrap();
            let released = released.lock().unwrap().take();
            tokio::spawn(async move {
                let _ = released.expect("one request").await;
                let _ = tx.send(Bytes::from_static(b"rest")).await;
            });
            async move { Ok::<_, Infallible>(Response::new(Channel(rx))) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let authenticator = Authenticator::builder(StaticToken::new("static-token"))
        .api_key("static-key")
        .origins([gateway.as_str()])
        .build()
        .unwrap();
    let proxy = proxy(
        authenticator,
        &format!("{gateway}/api"),
        ProxyOptions::default().secret("session-secret"),
    )
    .await;

    let request = Request::get(format!("{}/x?q=1", proxy.url))
        .header(SECRET_HEADER, "session-secret")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .header("ocp-apim-subscription-key", "client-key")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = response.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first ");
    release.send(()).unwrap();
    assert_eq!(text(response).await, "rest");

    let headers = seen.recv().await.unwrap();
    assert_eq!(headers[AUTHORIZATION], "Bearer static-token");
    assert_eq!(headers["ocp-apim-subscription-key"], "static-key");
    assert!(!headers.contains_key(SECRET_HEADER));
    assert!(!headers.contains_key("x-private"));
}

/// A response body fed by a channel.
struct Channel(mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test]
async fn no_token_for_now_is_a_503_with_the_providers_retry_after() {
    let mock = recording_mock().await;
    mock.fail_token_requests(Fault::too_many_requests("7"), Times::Always);
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    let response = get(format!("{}/workspaces/{}", proxy.url, mock.workspace_id())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "7");
    assert!(text(response).await.contains("429"));
    assert_eq!(mock.stats().api_requests, 0);
}

#[tokio::test]
async fn without_the_session_secret_nothing_is_forwarded() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default().secret("right-secret")).await;
    let url = format!("{}/workspaces/{}", proxy.url, mock.workspace_id());
    for secret in [
        None,
        Some("wrong-secret"),
        Some("right-secre"),
        Some("right-secrets"),
    ] {
        let mut request = Request::get(&url);
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        let response = client()
            .request(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{secret:?}");
    }
    assert_eq!(mock.stats().api_requests, 0);
    let request = Request::get(&url).header(SECRET_HEADER, "right-secret");
    let response = client()
        .request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().api_requests, 1);
}

#[tokio::test]
async fn a_request_that_would_leave_the_gateway_is_refused_unsent() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    for raw in [
        "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET /../../token HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /workspaces/%2E%2e/x HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let status = raw_status_line(&proxy.url, raw).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{raw:?}: {status}");
    }
    let stats = mock.stats();
    assert_eq!((stats.api_requests, stats.token_requests), (0, 0));
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn only_loopback_and_a_gateway_the_credentials_go_to() {
    let mock = MockVeracity::start().await.unwrap();
    let stop = std::future::pending::<()>;
    let anywhere = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = serve(
        anywhere,
        mock_authenticator(&mock),
        mock.api_url().parse().unwrap(),
        ProxyOptions::default(),
        stop(),
    )
    .await;
    assert!(matches!(refused, Err(ProxyError::Config(_))), "{refused:?}");

    // Credentials go to Veracity's origin alone unless told otherwise: not to the mock.
    let veracity_only = Authenticator::builder(StaticToken::new("t"))
        .build()
        .unwrap();
    let loopback = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = serve(
        loopback,
        veracity_only,
        mock.api_url().parse().unwrap(),
        ProxyOptions::default(),
        stop(),
    )
    .await;
    let Err(ProxyError::Config(why)) = refused else {
        panic!("{refused:?}")
    };
    assert!(why.contains(&mock.url()), "{why}");
}

#[tokio::test]
async fn listen_defaults_to_loopback_and_anything_else_is_refused_before_binding() {
    use clap::Parser;
    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        proxy: ProxyArgs,
    }
    let defaults = Command::parse_from(["proxy"]).proxy;
    assert_eq!(defaults.listen, "127.0.0.1:8787".parse().unwrap());
    assert!(!defaults.require_secret);

    let mock = MockVeracity::start().await.unwrap();
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8787"] {
        let args = Command::parse_from(["proxy", "--listen", listen, "--require-secret"]).proxy;
        let refused = run::<ProxyError>(
            args,
            mock_authenticator(&mock),
            mock.api_url().parse().unwrap(),
        )
        .await;
        assert!(
            matches!(refused, Err(ProxyError::Config(_))),
            "{listen}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn no_credential_in_the_log() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default().secret("the-session-secret")).await;
    let ws = mock.workspace_id();
    let sas_like = "sv=2022-11-02&sig=a-sas-signature";
    for path in [
        format!("/workspaces/{ws}?{sas_like}"),
        format!("/workspaces/{ws}/datasets/query?{sas_like}"),
        "/nowhere".to_owned(),
    ] {
        let request = Request::get(format!("{}{path}", proxy.url))
            .header(SECRET_HEADER, "the-session-secret")
            .header(AUTHORIZATION, "Bearer a-client-token")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        client().request(request).await.unwrap();
    }
    let token = current_token(&proxy.authenticator).await;
    let log = proxy.log.text();
    assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    assert_eq!(log.lines().count(), 4, "{log}");
    for secret in [
        token.as_str(),
        mock.client_secret(),
        mock.api_key(),
        "the-session-secret",
        "a-client-token",
        "a-sas-signature",
    ] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

// === Real clients ===

fn output_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A file of the test's own under the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir();
        TempFile(dir.join(format!("veracity-proxy-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_through_the_proxy() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    let url = format!("{}/workspaces/{}", proxy.url, mock.workspace_id());
    let (upload, download) = (TempFile::new("curl-up"), TempFile::new("curl-down"));
    std::fs::write(&upload.0, pattern(FIVE_MB)).unwrap();

    let (url2, up, down) = (url.clone(), upload.0.clone(), download.0.clone());
    let (workspace, uploaded) = tokio::task::spawn_blocking(move || {
        let workspace = output_of(Command::new("curl").args(["-sS", "--fail", &url2]));
        let uploaded = output_of(
            Command::new("curl")
                .args(["-sS", "--fail", "-T"])
                .arg(&up)
                .arg(format!("{url2}/pattern")),
        );
        output_of(
            Command::new("curl")
                .args(["-sS", "--fail", "-o"])
                .arg(&down)
                .arg(format!("{url2}/pattern?bytes={FIVE_MB}")),
        );
        (workspace, uploaded)
    })
    .await
    .unwrap();
    assert!(workspace.contains(mock.workspace_id()), "{workspace}");
    assert_eq!(uploaded, format!("{{\"bytes\":{FIVE_MB},\"intact\":true}}"));
    assert!(std::fs::read(&download.0).unwrap() == pattern(FIVE_MB));
    assert_credentials_on_every_request(&mock);
    assert_eq!(mock.stats().token_requests, 1);
}

/// GET the workspace, stream a chunked upload, stream a download checking every chunk, and
/// one more GET after the test revoked the tokens (it waits on stdin in between).
const PYTHON: &str = r#"
import sys, urllib.request
base, ws, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
pat = bytes(range(251))
full = (pat * (total // 251 + 1))[:total]
def chunks():
    for o in range(0, total, 65536):
        yield full[o:o + 65536]
with urllib.request.urlopen(f"{base}/workspaces/{ws}") as r:
    assert r.status == 200 and ws in r.read().decode(), "workspace"
req = urllib.request.Request(f"{base}/workspaces/{ws}/pattern", data=chunks(), method="PUT")
with urllib.request.urlopen(req) as r:
    print(r.read().decode())
read = 0
with urllib.request.urlopen(f"{base}/workspaces/{ws}/pattern?bytes={total}") as r:
    while True:
        chunk = r.read(65536)
        if not chunk:
            break
        assert chunk == full[read:read + len(chunk)], f"byte {read}"
        read += len(chunk)
        if read >= 65536 and read - len(chunk) < 65536:
            print("streaming", flush=True)
            sys.stdin.readline()
print(read)
with urllib.request.urlopen(f"{base}/workspaces/{ws}") as r:
    print(r.status)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn python_urllib_through_the_proxy_with_a_revocation_mid_stream() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default()).await;
    let mut child = Command::new("python3")
        .args(["-c", PYTHON, &proxy.url, mock.workspace_id()])
        .arg(FIVE_MB.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line == "streaming" {
                // Mid-download: revoke every token the proxy holds, then let Python go on.
                mock.revoke_all_tokens();
                stdin.write_all(b"\n").unwrap();
                stdin.flush().unwrap();
            }
            lines.push(line);
        }
        (lines, mock)
    });
    let (lines, mock) = lines.await.unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{lines:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        lines,
        [
            format!("{{\"bytes\":{FIVE_MB},\"intact\":true}}"),
            "streaming".to_owned(),
            FIVE_MB.to_string(),
            "200".to_owned(),
        ]
    );
    let stats = mock.stats();
    assert_eq!(stats.rejected_revoked_token, 1);
    assert_eq!(stats.token_requests, 2);
    assert_credentials_on_every_request(&mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_refused_without_the_session_secret() {
    let mock = recording_mock().await;
    let proxy = proxy_for(&mock, ProxyOptions::default().secret("s3cret")).await;
    let url = format!("{}/workspaces/{}", proxy.url, mock.workspace_id());
    let ws = mock.workspace_id().to_owned();
    let (refused, answered) = tokio::task::spawn_blocking(move || {
        let refused = output_of(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]));
        let answered = output_of(Command::new("curl").args([
            "-sS",
            "--fail",
            "-H",
            "X-Veracity-Proxy-Secret: s3cret",
            &url,
        ]));
        (refused, answered)
    })
    .await
    .unwrap();
    assert_eq!(refused, "403");
    assert!(answered.contains(&ws), "{answered}");
}
