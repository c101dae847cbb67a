//! Running `veracity-auth` as a user does: a process with its own home, config file and
//! cache, against the mock on 127.0.0.1.
#![allow(dead_code)]

use std::{path::PathBuf, process::Stdio};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
};
use veracity_auth_mock::MockVeracity;

/// One user's machine: a home directory, with the config file the test writes.
pub struct Home {
    dir: tempfile::TempDir,
}

/// What a run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes the config file where the platform keeps it (`$XDG_CONFIG_HOME/veracity-auth`).
    pub fn config(&self, text: &str) {
        let dir = self.dir.path().join("xdg-config/veracity-auth");
        std::fs::create_dir_all(&dir).expect("the config directory");
        std::fs::write(dir.join("config.toml"), text).expect("the config file");
    }

    /// A service-account profile `ci` and a person's profile `me`, both on the mock, their
    /// secrets in the variables [`Home::command`] sets.
    pub fn profiles_for(&self, mock: &MockVeracity) {
        let base = mock.url();
        self.config(&format!(
            r#"
            default_profile = "ci"

            [profiles.ci]
            kind = "service-account"
            client_id = "{client}"
            client_secret = {{ env = "TEST_CLIENT_SECRET" }}
            api_key = {{ env = "TEST_API_KEY" }}
            token_url = "{token_url}"
            resource = "{resource}"
            gateway = "{base}/veracity/dw/gateway"
            workspace = "{workspace}"

            [profiles.me]
            kind = "person"
            client_id = "{client}"
            api_key = {{ env = "TEST_API_KEY" }}
            authorize_url = "{authorize}"
            token_url = "{user_token_url}"
            scope = "{scope}"
            gateway = "{base}/veracity/dw/gateway"
            "#,
            client = mock.client_id(),
            token_url = mock.token_url(),
            resource = mock.resource(),
            workspace = mock.workspace_id(),
            authorize = mock.authorize_url(),
            user_token_url = mock.user_token_url(),
            scope = mock.user_scope(),
        ));
    }

    /// `veracity-auth ARGS` with nothing of the test's own environment: this home and the mock's secrets in `TEST_CLIENT_SECRET` and `TEST_API_KEY`.
    pub fn command(&self, mock: Option<&MockVeracity>, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_veracity-auth"));
        let home = self.dir.path();
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("xdg-config"))
            .env("XDG_CACHE_HOME", home.join("xdg-cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(mock) = mock {
            // Every run of every test: no secret is ever needed in argv.
            for arg in args {
                assert!(
                    !arg.contains(mock.client_secret()) && !arg.contains(mock.api_key()),
                    "a secret in argv: {args:?}"
                );
            }
            command
                .env("TEST_CLIENT_SECRET", mock.client_secret())
                .env("TEST_API_KEY", mock.api_key());
        }
        command
    }

    /// Runs `veracity-auth ARGS` to its end.
    pub async fn run(&self, mock: Option<&MockVeracity>, args: &[&str]) -> Run {
        finish(self.command(mock, args).spawn().expect("the binary runs")).await
    }
}

/// Waits for a child and collects what it printed.
pub async fn finish(child: Child) -> Run {
    let output = child.wait_with_output().await.expect("the child ends");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A plain HTTP/1.1 GET, answered in full: the status line's code and the headers, lower
/// case. The test plays the browser with it, without following redirects.
pub async fn get(url: &str) -> (u16, Vec<(String, String)>) {
    let uri: http::Uri = url.parse().expect("a URL");
    let authority = uri.authority().expect("an authority").as_str().to_owned();
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connects");
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}
