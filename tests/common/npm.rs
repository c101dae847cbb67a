//! Servers from the npm registry, each pinned in `.ci/<package>/` with its lock file: a file
//! of the installed package ([`package_file`], installing it once with `npm ci` when npm is
//! present and the package is not), and the server as a child process ([`NodeServer`]),
//! started once it prints the line that says it listens, killed on drop.
//!
//! Tests that need one are `#[ignore]`d: `cargo test --all-features` passes with Rust alone;
//! once included they never skip, they fail saying how to install the package.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

/// How long a server may take to start, and to print any line asked of it after.
const STARTUP: Duration = Duration::from_secs(60);

/// The repository's root: the manifest's directory, or its parent for the engines member
/// (`engines/`, whose rig includes `azurite.rs` and this file too).
pub fn repo() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.join(".ci").is_dir() {
        true => manifest,
        false => manifest.parent().unwrap_or(manifest),
    }
}

/// How to install `package`, for failure messages.
pub fn install_hint(package: &str) -> String {
    format!(
        "Install it with Node.js 20+ and npm: `npm ci --prefix .ci/{package}` at the repository \
         root (`.ci/run` does this)."
    )
}

/// `$var` when `var` is given and set; else `.ci/<package>/<file>`, running `npm ci --prefix
/// .ci/<package>` once (from the npm registry, with the committed lock file) when it is
/// missing. Panics, saying how to install the package, when there is no such file.
pub fn package_file(package: &str, file: &str, var: Option<&str>) -> PathBuf {
    let hint = install_hint(package);
    if let Some(path) = var.and_then(std::env::var_os) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{}={} is not a file.\n{hint}",
            var.unwrap_or_default(),
            path.display()
        );
        return path;
    }
    let dir = repo().join(".ci").join(package);
    let path = dir.join(file);
    static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !path.is_file() && !installed.iter().any(|p| p == package) {
        installed.push(package.to_owned());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run `npm`: {e}.\n{hint}"));
        assert!(status.success(), "`npm ci` failed ({status}).\n{hint}");
    }
    assert!(
        path.is_file(),
        "{package} (npm) is not installed: no {}.\n{hint}",
        path.display()
    );
    path
}

/// A server run as a child process: its standard output line by line, its standard input
/// to talk to it; killed on drop.
pub struct NodeServer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// What it printed before the line [`NodeServer::start`] waited for.
    pub startup: Vec<String>,
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeServer {
    /// Runs `command` and returns once `started` has returned `true` for a line of its
    /// output (it reads each line before, to pick up a port, say). `hint` says how to install
    /// what it runs. Blocking: call it off the runtime's workers ([`NodeServer::spawn`]).
    pub fn start(
        mut command: Command,
        hint: &str,
        mut started: impl FnMut(&str) -> bool,
    ) -> NodeServer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}.\n{hint}", command.get_program()));
        // Stdout lines arrive on a channel; the thread keeps draining so the server never
        // blocks on a full pipe. Stderr is kept for the failure message.
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // From here on the guard kills the child, whatever happens.
        let stdin = child.stdin.take().expect("piped stdin");
        let mut server = NodeServer {
            name: format!("{command:?}"),
            child,
            stdin,
            lines,
            stderr,
            startup: Vec::new(),
        };
        loop {
            let line = server.next_line(hint);
            if started(&line) {
                return server;
            }
            server.startup.push(line);
        }
    }

    /// [`NodeServer::start`] on a blocking thread.
    pub async fn spawn(
        command: Command,
        hint: String,
        started: impl FnMut(&str) -> bool + Send + 'static,
    ) -> NodeServer {
        tokio::task::spawn_blocking(move || NodeServer::start(command, &hint, started))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The next line it prints; panics with what it printed when it ends or takes longer
    /// than a minute.
    pub fn next_line(&mut self, hint: &str) -> String {
        self.lines.recv_timeout(STARTUP).unwrap_or_else(|e| {
            panic!(
                "{} stopped reporting ({}).\n{hint}\nstdout:\n{}\nstderr:\n{}",
                self.name,
                match e {
                    mpsc::RecvTimeoutError::Timeout => "timed out",
                    mpsc::RecvTimeoutError::Disconnected => "it exited",
                },
                self.startup.join("\n"),
                self.stderr.lock().unwrap()
            )
        })
    }

    /// Writes `line` to its standard input.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

/// The port at the end of `address` (`http://127.0.0.1:PORT`, `127.0.0.1:PORT`, `PORT`).
pub fn port_of(address: &str) -> Option<u16> {
    address.trim().rsplit(':').next()?.parse().ok()
}
