//! Access tokens kept between runs: one file per profile and audience, mode 0600, read and
//! written under an advisory lock on a file beside it, so that a script's hundred calls make
//! one token request and two processes started at once make one, not two.
//!
//! Expiries are wall-clock times (seconds since the Unix epoch): the only clock two processes
//! share. A token is reused only while it has at least the `--min-valid` asked for left.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{CliError, config::Profile};

/// The variable naming the cache directory (default: the platform's cache directory for
/// `veracity-auth`, `tokens` under it).
pub const CACHE_VAR: &str = "VERACITY_AUTH_CACHE";

/// An access token and when it expires.
#[derive(Clone, Serialize, Deserialize)]
pub struct Issued {
    /// The token. A credential: never logged.
    pub access_token: String,
    /// Its expiry, in seconds since the Unix epoch.
    pub expires_on: u64,
}

impl Issued {
    /// The expiry as a time.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_on)
    }

    /// How long it is still valid (zero once expired).
    pub fn valid_for(&self) -> Duration {
        self.expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_on", &self.expires_on)
            .finish_non_exhaustive()
    }
}

/// The cache entry of one profile and audience, locked against other processes until dropped.
pub struct Entry {
    path: PathBuf,
    // Held for its lock; closing the file releases it.
    _lock: File,
}

/// The cache directory.
fn dir() -> Result<PathBuf, CliError> {
    match std::env::var_os(CACHE_VAR) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => directories::ProjectDirs::from("com", "DNV", "veracity-auth")
            .map(|dirs| dirs.cache_dir().join("tokens"))
            .ok_or_else(|| CliError::Config(format!("no home directory: set {CACHE_VAR}"))),
    }
}

/// `token-<profile>-<hash>`: the profile's name with every byte outside `A-Z a-z 0-9 - _` as
/// `%XX`, and a hash of what the token is for (kind, client, endpoint, audience), so that a
/// profile whose settings changed does not get an old token.
fn file_name(profile: &Profile) -> String {
    let mut name = String::from("token-");
    for b in profile.name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(char::from(b)),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    let identity = format!(
        "{:?}\n{}\n{}\n{}",
        profile.kind,
        profile.client_id,
        profile.token_url.as_deref().unwrap_or(""),
        profile.audience()
    );
    // FNV-1a: a stable name, not a security measure.
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{name}-{hash:016x}")
}

impl Entry {
    /// The entry of `profile`, once the lock is ours (waiting for another process holding it).
    pub fn lock(profile: &Profile) -> Result<Entry, CliError> {
        let dir = dir()?;
        let failed = |action: &str, path: &Path| {
            let path = path.display().to_string();
            let action = action.to_owned();
            move |e: io::Error| CliError::Other(format!("cannot {action} {path}: {e}"))
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(failed("create", &dir))?;
        let path = dir.join(file_name(profile));
        let lock_path = path.with_extension("lock");
        let lock = private(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )
        .open(&lock_path)
        .map_err(failed("open", &lock_path))?;
        lock.lock().map_err(failed("lock", &lock_path))?;
        Ok(Entry { path, _lock: lock })
    }

    /// The token kept, if any and readable.
    pub fn read(&self) -> Option<Issued> {
        serde_json::from_slice(&fs::read(&self.path).ok()?).ok()
    }

    /// Keeps `issued` for the next runs (a failure is reported, not fatal).
    pub fn write(&self, issued: &Issued) {
        let written = (|| {
            let temporary = self
                .path
                .with_extension(format!("{}.tmp", std::process::id()));
            let _ = fs::remove_file(&temporary);
            let mut file =
                private(OpenOptions::new().write(true).create_new(true)).open(&temporary)?;
            file.write_all(&serde_json::to_vec(issued).map_err(io::Error::other)?)?;
            fs::rename(&temporary, &self.path)
        })();
        if let Err(e) = written {
            eprintln!("veracity-auth: the token could not be kept for the next run: {e}");
        }
    }

    /// Forgets the token kept.
    pub fn remove(&self) -> Result<(), CliError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CliError::Other(format!(
                "cannot remove {}: {e}",
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }
}

/// Files created readable by the user alone.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}
