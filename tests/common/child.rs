//! Re-running this test binary as a child process: for a test that must change its
//! environment, install a process-wide default, or count on tracing callsites no other test
//! has registered. The parent runs one test of the binary (`--exact`) in a fresh process with
//! [`ROLE`] set; the test's body checks [`role`] or [`running`] to know which side it is on.

use std::{
    ffi::OsStr,
    process::{Command, Stdio},
};
use veracity_auth::TokenEndpoint;

/// Names the role a child plays; set only in a child.
pub const ROLE: &str = "VERACITY_AUTH_TEST_CHILD";

/// The role this process plays, when it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Whether this process is a child.
pub fn running() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// A run of this binary's test `test` (its full path, `module::name`), alone, as `role`.
pub struct Child {
    command: Command,
}

impl Child {
    pub fn new(test: &str, role: &str) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                test,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role);
        Child { command }
    }

    /// The same run under `sh -c script`, whose `exec "$0" "$@"` starts this binary (for a
    /// `ulimit`, say).
    pub fn in_shell(self, script: &str) -> Child {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg(self.command.get_program());
        command.args(self.command.get_args());
        for (name, value) in self.command.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        Child { command }
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Child {
        self.command.env(name, value);
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Child {
        self.command.envs(vars);
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Child {
        self.command.env_remove(name);
        self
    }

    /// Without each of `names` in its environment.
    pub fn envs_removed<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Child {
        for name in names {
            self.command.env_remove(name);
        }
        self
    }

    /// A client's id, secret and token URL for the child, which [`credentials`] reads there.
    pub fn client(self, id: &str, secret: &str, token_url: &str) -> Child {
        self.env("CHILD_CLIENT_ID", id)
            .env("CHILD_CLIENT_SECRET", secret)
            .env("CHILD_TOKEN_URL", token_url)
    }

    /// Runs it to its end and asserts that its one test passed; its standard output.
    pub fn passed(mut self) -> String {
        let out = self.command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// [`Child::passed`], and asserts that the test printed `marker` (it ran, and did not
    /// return early).
    pub fn printed(self, marker: &str) -> String {
        let stdout = self.passed();
        assert!(stdout.contains(marker), "the child did not run: {stdout}");
        stdout
    }

    /// Starts it with piped standard input and output, for a test that talks to it.
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// In the child, the client [`Child::client`] named.
pub fn credentials() -> veracity_auth::ClientCredentials {
    credentials_at(endpoint())
}

/// In the child, the token endpoint [`Child::client`] named.
pub fn endpoint() -> TokenEndpoint {
    TokenEndpoint::plain_http(std::env::var("CHILD_TOKEN_URL").unwrap()).unwrap()
}

/// In the child, the client [`Child::client`] named, at `endpoint`.
pub fn credentials_at(endpoint: TokenEndpoint) -> veracity_auth::ClientCredentials {
    let var = |name| std::env::var(name).unwrap();
    veracity_auth::ClientCredentials::new(var("CHILD_CLIENT_ID"), var("CHILD_CLIENT_SECRET"))
        .endpoint(endpoint)
}

/// Runs the test `test` alone in a child process and asserts it passed there. `true` in
/// the parent, which then returns; `false` in the child, which runs the test's body.
pub fn ran_alone(test: &str) -> bool {
    if running() {
        return false;
    }
    Child::new(test, test).passed();
    true
}
