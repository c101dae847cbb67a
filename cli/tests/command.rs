//! `veracity-auth` as a user runs it: the binary as a process against the mock on
//! 127.0.0.1, its output, exit codes and the mock's counts asserted from outside.

mod common;

use std::{process::Stdio, time::Duration};

use common::{Home, Run, finish, get};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use veracity_auth_mock::{Fault, MockVeracity, Times};

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn every_subcommand_has_help_and_usage_errors_exit_2() {
    let home = Home::new();
    for command in [
        "login",
        "logout",
        "status",
        "token",
        "header",
        "env",
        "exec",
        "sas",
        "proxy",
        "completions",
    ] {
        let run = home.run(None, &[command, "--help"]).await;
        ok(&run);
        assert!(
            run.stdout.contains("Usage: veracity-auth"),
            "{command}: {run:?}"
        );
    }
    let run = home.run(None, &["completions", "bash"]).await;
    ok(&run);
    assert!(run.stdout.contains("veracity-auth"), "{run:?}");
    for wrong in [
        &["token", "--format", "xml"][..],
        &["tokn"],
        &["token", "--min-valid", "5x"],
    ] {
        assert_eq!(home.run(None, wrong).await.code, 2, "{wrong:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_token_calls_make_one_token_request() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let first = home.run(Some(&mock), &["token"]).await;
    ok(&first);
    for _ in 1..100 {
        let run = home.run(Some(&mock), &["token"]).await;
        ok(&run);
        assert_eq!(run.stdout, first.stdout);
    }
    assert_eq!(mock.stats().token_requests, 1);
    // The token works at the gateway.
    assert_eq!(mock.stats().tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_started_at_once_make_one_token_request() {
    let mock = MockVeracity::start().await.unwrap();
    // Slow answers, so that the second process starts while the first one waits.
    mock.fail_token_requests(Fault::Delay(Duration::from_millis(300)), Times::Once);
    let home = Home::new();
    home.profiles_for(&mock);
    let a = home.command(Some(&mock), &["token"]).spawn().unwrap();
    let b = home.command(Some(&mock), &["token"]).spawn().unwrap();
    let (a, b) = tokio::join!(finish(a), finish(b));
    ok(&a);
    ok(&b);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(mock.stats().token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_valid_and_force_refresh_decide_when_to_fetch() {
    let mock = MockVeracity::builder()
        .token_lifetime(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    ok(&home.run(Some(&mock), &["token"]).await);
    ok(&home
        .run(Some(&mock), &["token", "--min-valid", "50m"])
        .await);
    assert_eq!(mock.stats().token_requests, 1);
    // A kept token with less than two hours left does not do for `--min-valid 2h`.
    ok(&home.run(Some(&mock), &["token", "--min-valid", "2h"]).await);
    assert_eq!(mock.stats().token_requests, 2);
    ok(&home.run(Some(&mock), &["token", "--force-refresh"]).await);
    assert_eq!(mock.stats().token_requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_json_has_one_unambiguous_expiry() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let run = home.run(Some(&mock), &["token", "--format", "json"]).await;
    ok(&run);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["tokenType"], "Bearer");
    assert_eq!(json["profile"], "ci");
    let raw = home.run(Some(&mock), &["token"]).await;
    assert_eq!(json["accessToken"].as_str().unwrap(), raw.stdout.trim());
    let epoch = json["expires_on"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3500..=now + 3600).contains(&epoch),
        "{epoch} vs {now}"
    );
    let rfc3339 = json["expiresOn"].as_str().unwrap();
    assert!(rfc3339.ends_with('Z') && rfc3339.len() == 20, "{rfc3339}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_env_and_exec_hand_over_the_token_and_key() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let token = home
        .run(Some(&mock), &["token"])
        .await
        .stdout
        .trim()
        .to_owned();
    let key = mock.api_key();

    let header = home.run(Some(&mock), &["header"]).await;
    ok(&header);
    assert_eq!(
        header.stdout,
        format!("Authorization: Bearer {token}\nOcp-Apim-Subscription-Key: {key}\n")
    );
    let json = home.run(Some(&mock), &["header", "--format", "json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        json["headers"]["Authorization"][0],
        format!("Bearer {token}")
    );
    assert_eq!(json["headers"]["Ocp-Apim-Subscription-Key"][0], key);
    assert!(json["expires"].as_str().unwrap().ends_with('Z'));

    let env = home.run(Some(&mock), &["env", "--shell", "sh"]).await;
    ok(&env);
    assert!(
        env.stdout
            .contains(&format!("export VERACITY_ACCESS_TOKEN='{token}'\n"))
    );
    assert!(
        env.stdout
            .contains(&format!("export VERACITY_API_KEY='{key}'\n"))
    );
    for shell in ["fish", "powershell", "dotenv"] {
        let run = home.run(Some(&mock), &["env", "--shell", shell]).await;
        ok(&run);
        assert!(
            run.stdout.contains(&token) && run.stdout.contains(key),
            "{shell}"
        );
    }

    // The child sees both (in its environment: no secret in any argv), and its exit code is
    // ours.
    let script = r#"printf '%s\n%s\n' "$VERACITY_ACCESS_TOKEN" "$VERACITY_API_KEY"; exit 7"#;
    let run = home
        .run(Some(&mock), &["exec", "--", "sh", "-c", script])
        .await;
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(run.stdout, format!("{token}\n{key}\n"));
    ok(&home.run(Some(&mock), &["exec", "--", "true"]).await);
    assert_eq!(mock.stats().token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sas_prints_a_dataset_sas() {
    let mock = MockVeracity::start().await.unwrap();
    mock.add_dataset("ds-1", mock.storage_container(), "datasets/ds-1");
    let home = Home::new();
    home.profiles_for(&mock);
    let url = home.run(Some(&mock), &["sas", "--dataset", "ds-1"]).await;
    ok(&url);
    assert!(
        url.stdout.contains("datasets/ds-1?") && url.stdout.contains("sig="),
        "{url:?}"
    );
    let file = ["sas", "--dataset", "ds-1", "--file", "a/b.parquet"];
    let file = home.run(Some(&mock), &file).await;
    assert!(
        file.stdout.contains("datasets/ds-1/a/b.parquet?"),
        "{file:?}"
    );
    let json = home
        .run(
            Some(&mock),
            &["sas", "--dataset", "ds-1", "--format", "json"],
        )
        .await;
    ok(&json);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(json["sasToken"].as_str().unwrap().contains("sig="));
    assert!(json["expiresOn"].as_str().unwrap().ends_with('Z'));
    let env = home
        .run(Some(&mock), &["sas", "--storage", "--format", "env"])
        .await;
    ok(&env);
    assert!(
        env.stdout.contains("export AZURE_STORAGE_SAS_TOKEN='"),
        "{env:?}"
    );
    // The SAS calls reused the token kept by the first run.
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().sas_issued, 4, "{:?}", mock.stats());
}

/// Plays the browser for `login --paste` (or `login --no-browser`): reads the sign-in address
/// on stderr and asks the mock's authorize endpoint; then pastes the address it redirects to
/// (or follows the redirect). Returns the run and that address (it holds the code).
async fn login(home: &Home, mock: &MockVeracity, paste: bool) -> (Run, String) {
    let mode = if paste { "--paste" } else { "--no-browser" };
    let mut child = home
        .command(Some(mock), &["--profile", "me", "login", mode])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).await.unwrap() > 0,
            "no address in {seen}"
        );
        seen += &line;
        if line.trim().starts_with(&mock.authorize_url()) {
            break line.trim().to_owned();
        }
    };
    let (status, headers) = get(&url).await;
    assert_eq!(status, 302);
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .unwrap()
        .1
        .clone();
    let mut stdin = child.stdin.take().unwrap();
    if paste {
        stdin
            .write_all(format!("{location}\n").as_bytes())
            .await
            .unwrap();
    } else {
        assert_eq!(get(&location).await.0, 200);
    }
    drop(stdin);
    stderr.read_to_string(&mut seen).await.unwrap();
    let mut run = finish(child).await;
    run.stderr = seen + &run.stderr;
    (run, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exits_4_before_a_sign_in_and_0_after_login_paste() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let before = home.run(Some(&mock), &["--profile", "me", "status"]).await;
    assert_eq!(before.code, 4, "{before:?}");
    assert!(
        before.stderr.contains("veracity-auth --profile me login"),
        "{before:?}"
    );
    assert_eq!(
        home.run(Some(&mock), &["--profile", "me", "token"])
            .await
            .code,
        4
    );

    let (login, _) = login(&home, &mock, true).await;
    ok(&login);
    assert_eq!(mock.stats().authorization_code_grants, 1);

    let after = home.run(Some(&mock), &["--profile", "me", "status"]).await;
    ok(&after);
    assert!(after.stdout.contains("sign-in: kept in"), "{after:?}");
    // The sign-in's own access token serves the next runs: no refresh yet.
    ok(&home.run(Some(&mock), &["--profile", "me", "token"]).await);
    assert_eq!(mock.stats().refresh_token_grants, 0);
    // Past it, the kept refresh token is used without a prompt.
    ok(&home
        .run(
            Some(&mock),
            &["--profile", "me", "token", "--force-refresh"],
        )
        .await);
    assert_eq!(mock.stats().refresh_token_grants, 1);

    // A revoked sign-in asks for a new one, naming the command.
    mock.revoke_refresh_tokens();
    let revoked = home
        .run(
            Some(&mock),
            &["--profile", "me", "token", "--force-refresh"],
        )
        .await;
    assert_eq!(revoked.code, 4, "{revoked:?}");
    assert!(revoked.stderr.contains("login"), "{revoked:?}");

    ok(&home.run(Some(&mock), &["--profile", "me", "logout"]).await);
    assert_eq!(
        home.run(Some(&mock), &["--profile", "me", "status"])
            .await
            .code,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_no_browser_prints_the_address_and_waits_for_the_redirect() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let (run, _) = login(&home, &mock, false).await;
    ok(&run);
    ok(&home.run(Some(&mock), &["--profile", "me", "status"]).await);
    // A paste that is not this sign-in's answer ends the login at once.
    let mut child = home
        .command(Some(&mock), &["--profile", "me", "login", "--paste"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"http://localhost:1/?code=forged&state=forged\n")
        .await
        .unwrap();
    drop(stdin);
    let run = finish(child).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains("forged"), "{run:?}");
    assert_eq!(mock.stats().authorization_code_grants, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_config_the_veracity_variables_make_a_profile() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    let env = |args: &[&str]| {
        let mut command = home.command(Some(&mock), args);
        command
            .env("VERACITY_CLIENT_ID", mock.client_id())
            .env("VERACITY_CLIENT_SECRET", mock.client_secret())
            .env("VERACITY_API_KEY", mock.api_key())
            .env("VERACITY_TOKEN_URL", mock.token_url())
            .env("VERACITY_RESOURCE", mock.resource());
        command
    };
    let run = finish(env(&["token", "--format", "json"]).spawn().unwrap()).await;
    ok(&run);
    assert!(run.stdout.contains(r#""profile":"env""#), "{run:?}");
    let run = finish(env(&["header"]).spawn().unwrap()).await;
    ok(&run);
    assert_eq!(mock.stats().token_requests, 1);
    // Half a set-up names what is missing.
    let run = finish(
        home.command(Some(&mock), &["token"])
            .env("VERACITY_CLIENT_ID", "id")
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("VERACITY_CLIENT_SECRET"), "{run:?}");
    // A config file named but missing is an error, not the variables.
    let run = finish(
        env(&["token"])
            .env("VERACITY_AUTH_CONFIG", home.path().join("missing.toml"))
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(run.code, 3, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    // Nothing configured: 3.
    let run = home.run(Some(&mock), &["token"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    home.profiles_for(&mock);
    // An unknown profile, a missing variable: 3.
    assert_eq!(
        home.run(Some(&mock), &["--profile", "nope", "token"])
            .await
            .code,
        3
    );
    assert_eq!(home.run(None, &["token"]).await.code, 3);
    // A wrong secret: 6.
    let run = home
        .command(Some(&mock), &["token"])
        .env("TEST_CLIENT_SECRET", "a-wrong-secret")
        .spawn()
        .unwrap();
    let run = finish(run).await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(!run.stderr.contains("a-wrong-secret"), "{run:?}");
    // The provider's 503: 5.
    mock.fail_token_requests(Fault::status(503), Times::Always);
    assert_eq!(home.run(Some(&mock), &["token"]).await.code, 5);
    // No terminal, or CI: a login that would wait for a browser exits 4 at once.
    let run = home
        .command(Some(&mock), &["--profile", "me", "login"])
        .env("CI", "1")
        .spawn()
        .unwrap();
    let run = finish(run).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("login --paste"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_on_stderr() {
    let mock = MockVeracity::start().await.unwrap();
    mock.add_dataset("ds-1", mock.storage_container(), "datasets/ds-1");
    let home = Home::new();
    home.profiles_for(&mock);
    let mut runs = Vec::new();
    for args in [
        &["token"][..],
        &["token", "--format", "json"],
        &["header"],
        &["env"],
        &["exec", "--", "true"],
        &["status"],
        &["sas", "--dataset", "ds-1"],
        &["--profile", "me", "status"],
    ] {
        runs.push(home.run(Some(&mock), args).await);
    }
    let (login, pasted) = login(&home, &mock, true).await;
    ok(&login);
    runs.push(login);
    for args in [
        &["--profile", "me", "token"][..],
        &["--profile", "me", "header"],
    ] {
        runs.push(home.run(Some(&mock), args).await);
    }
    mock.revoke_refresh_tokens();
    runs.push(
        home.run(
            Some(&mock),
            &["--profile", "me", "token", "--force-refresh"],
        )
        .await,
    );
    mock.fail_token_requests(Fault::status(503), Times::Always);
    runs.push(home.run(Some(&mock), &["token", "--force-refresh"]).await);

    let code = pasted
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let refresh_token = std::fs::read_dir(home.path().join("xdg-config/veracity-auth"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("mock-client-id")
        })
        .map(|path| std::fs::read_to_string(path).unwrap())
        .unwrap_or_default();
    let service_token = runs[0].stdout.trim().to_owned();
    let person_token = runs[9].stdout.trim().to_owned();
    let secrets = [
        mock.client_secret(),
        mock.api_key(),
        &code,
        refresh_token.trim(),
        &service_token,
        &person_token,
    ];
    for secret in secrets {
        assert!(secret.len() >= 8, "{secret:?}");
        for run in &runs {
            assert!(!run.stderr.contains(secret), "a secret on stderr: {run:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn header_piped_to_curl_reaches_the_gateway() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let header = home
        .command(Some(&mock), &["header"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut header_out = header.stdout.unwrap();
    let mut lines = Vec::new();
    header_out.read_to_end(&mut lines).await.unwrap();
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    assert_eq!(curl_status(&url, &lines).await, "200");
    assert_eq!(mock.stats().api_ok, 1);
}

/// `veracity-auth proxy` as a process, started as a user starts it: it says on stderr where
/// it listens, and a plain HTTP client's request reaches the gateway with the credentials
/// added; its log line names the request, never a credential.
async fn start_proxy(home: &Home, mock: &MockVeracity, args: &[&str]) -> (Child, String, Lines) {
    let mut command = home.command(
        Some(mock),
        &[&["proxy", "--listen", "127.0.0.1:0"], args].concat(),
    );
    let mut child = command.spawn().expect("the binary runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("the proxy says where it listens");
        if let Some(rest) = line.split_once("listening on http://") {
            break rest
                .1
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',')
                .to_owned();
        }
    };
    (child, addr, stderr)
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStderr>>;
type Child = tokio::process::Child;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_command_forwards_with_the_credentials_added() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let (mut child, addr, mut stderr) = start_proxy(&home, &mock, &[]).await;
    let path = format!("/api/v2/workspaces/{}", mock.workspace_id());
    let (status, _) = get(&format!("http://{addr}{path}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        mock.stats().api_ok,
        1,
        "the gateway took the token and the key"
    );
    let logged = stderr
        .next_line()
        .await
        .unwrap()
        .expect("a log line per request");
    assert!(
        logged.contains("GET") && logged.contains(&path) && logged.contains("200"),
        "{logged}"
    );
    child.kill().await.unwrap();
    for secret in [mock.client_secret(), mock.api_key()] {
        assert!(!logged.contains(secret), "{logged}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs curl"]
async fn curl_through_the_proxy_command_with_its_session_secret() {
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let (mut child, addr, _stderr) = start_proxy(&home, &mock, &["--require-secret"]).await;
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let secret = stdout
        .next_line()
        .await
        .unwrap()
        .expect("the session secret, once");
    let url = format!("http://{addr}/api/v2/workspaces/{}", mock.workspace_id());
    assert_eq!(
        curl_status(
            &url,
            format!("X-Veracity-Proxy-Secret: {secret}\n").as_bytes()
        )
        .await,
        "200"
    );
    assert_eq!(mock.stats().api_ok, 1);
    assert_eq!(
        curl_status(&url, b"X-Veracity-Proxy-Secret: wrong\n").await,
        "403"
    );
    assert_eq!(
        mock.stats().api_ok,
        1,
        "nothing forwarded without the secret"
    );
    child.kill().await.unwrap();
}

/// Python's standard library through `veracity-auth proxy` run as a process: the workspace,
/// then 5 MB up (chunked) and 5 MB down, checked byte by byte against the mock's pattern.
const PYTHON: &str = r#"
import sys, urllib.request
base, ws, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
full = (bytes(range(251)) * (total // 251 + 1))[:total]
def chunks():
    for o in range(0, total, 65536):
        yield full[o:o + 65536]
with urllib.request.urlopen(f"{base}/workspaces/{ws}") as r:
    print(r.status)
req = urllib.request.Request(f"{base}/workspaces/{ws}/pattern", data=chunks(), method="PUT")
with urllib.request.urlopen(req) as r:
    print(r.read().decode())
with urllib.request.urlopen(f"{base}/workspaces/{ws}/pattern?bytes={total}") as r:
    print(r.read() == full)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn python_through_the_proxy_command_streams_five_megabytes_each_way() {
    const FIVE_MB: usize = 5 * 1024 * 1024;
    let mock = MockVeracity::start().await.unwrap();
    let home = Home::new();
    home.profiles_for(&mock);
    let (mut child, addr, _stderr) = start_proxy(&home, &mock, &[]).await;
    let output = tokio::process::Command::new("python3")
        .args([
            "-c",
            PYTHON,
            &format!("http://{addr}/api/v2"),
            mock.workspace_id(),
        ])
        .arg(FIVE_MB.to_string())
        .output()
        .await
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("200\n{{\"bytes\":{FIVE_MB},\"intact\":true}}\nTrue\n")
    );
    assert_eq!(
        mock.stats().token_requests,
        1,
        "one token for the whole session"
    );
    child.kill().await.unwrap();
}

/// What `curl` answers for `url` with the header lines `headers` read from its stdin
/// (`-H @-`: nothing secret in its argv): the status code.
async fn curl_status(url: &str, headers: &[u8]) -> String {
    let mut curl = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "@-",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    curl.stdin.take().unwrap().write_all(headers).await.unwrap();
    let output = curl.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}
