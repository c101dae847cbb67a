//! Where a sign-in's refresh token lives between runs: [`RefreshTokenStore`], the file store
//! [`FileStore`], and [`SignIn::restore_or_sign_in`], the one call for command-line tools.

use std::{
    any::Any,
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::SignIn;
use crate::{
    Error, RefreshToken, SignInError, StoreError, TokenSource,
    source::{StoreGuard, StoreHook},
};

/// Where the refresh token of a sign-in is kept between runs, one per app (client id).
///
/// Implementations keep the token out of `Debug`, `Display`, errors and logs. The methods are
/// synchronous and short (a small file read or write, a keychain call): the source
/// [`SignIn::restore_or_sign_in`] returns calls them on the task of a refresh, to store a
/// rotated token and to read the stored one again (before each refresh when the store has a
/// lock, and after a refused one).
///
/// Built in: [`FileStore`] (a file per client id, mode 0600, replaced atomically) and, with
/// feature `keyring`, [`KeyringStore`](super::KeyringStore) (the operating system's keychain).
pub trait RefreshTokenStore: fmt::Debug + Send + Sync + 'static {
    /// The stored refresh token of the app `client_id`, or `None` if there is none.
    fn load(&self, client_id: &str) -> Result<Option<String>, StoreError>;
    /// Stores `refresh_token` for `client_id`, replacing any earlier one.
    fn save(&self, client_id: &str, refresh_token: &str) -> Result<(), StoreError>;
    /// Forgets the refresh token of `client_id` (signing out). No token is not an error.
    fn delete(&self, client_id: &str) -> Result<(), StoreError>;
}

impl<S: RefreshTokenStore + ?Sized> RefreshTokenStore for Arc<S> {
    fn load(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        (**self).load(client_id)
    }
    fn save(&self, client_id: &str, refresh_token: &str) -> Result<(), StoreError> {
        (**self).save(client_id, refresh_token)
    }
    fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        (**self).delete(client_id)
    }
}

impl StoreError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |e| StoreError::Io {
            action,
            path,
            source: Arc::new(e),
        }
    }
}

/// Refresh tokens in files, one per client id, readable by the user alone.
///
/// - **Where**: the platform's configuration directory for the application
///   ([`FileStore::new`]: `veracity-auth` under `$XDG_CONFIG_HOME` or `~/.config` on Linux,
///   `~/Library/Application Support/com.DNV.veracity-auth` on macOS,
///   `%APPDATA%\DNV\veracity-auth\config` on Windows; [`FileStore::for_app`] for your own
///   tool's directory), or a directory of your choice ([`FileStore::in_dir`]). The directory
///   is created with mode 0700 when missing; an existing one is left as it is.
/// - **Which file**: `refresh-token-<client id>`, every byte of the client id outside
///   `A-Z a-z 0-9 - _` written as `%XX`, so no client id can leave the directory (`..`, `/`,
///   `\`) or hide the file (a leading `.`).
/// - **How**: a new token is written to a temporary file in the same directory, created with
///   mode 0600 (never readable by others, not even briefly), synced to disk, then renamed
///   over the old file. A reader sees the old token or the new one, whole, never a mix, and
///   a crash leaves the old one. A temporary file a killed run left behind never blocks a
///   save: when a later run (a restarted container has the same pid) comes to its name, it
///   removes it and writes afresh.
/// - **Two processes at once**: each writer has its own temporary file and the rename is
///   atomic, so concurrent writers never interleave: the last rename wins and every reader
///   sees one writer's whole token. The source [`SignIn::restore_or_sign_in`] returns for a
///   `FileStore` (or an `Arc<FileStore>`) refreshes under an advisory lock on
///   `refresh-token-<client id>.lock` beside the token's file (mode 0600, left in place),
///   held from reading the stored token to storing its rotation, so two processes of a tool
///   never spend one refresh token twice: the second reads the first's rotation from the file
///   and refreshes with that. A refresh waits for the lock at most until its exchange's
///   deadline ([`RefreshToken::exchange_timeout`]), polling without blocking its runtime; on
///   a file system without locks it refreshes without one (logged). A store that wraps a
///   `FileStore` has no lock: a refresh refused because another process rotated the token
///   is then retried once with the stored token.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store in this crate's directory under the platform's configuration directory,
    /// shared by every tool that uses the crate (one file per client id, so tools with their
    /// own app registration do not meet). Fails with [`StoreError::NoConfigDir`] when there
    /// is no home directory.
    pub fn new() -> Result<Self, StoreError> {
        Self::for_app("com", "DNV", "veracity-auth")
    }

    /// The store in your application's configuration directory, named as
    /// [`directories::ProjectDirs::from`] names it (`qualifier`, `organization`,
    /// `application`: `"com", "Example", "my-tool"`).
    pub fn for_app(
        qualifier: &str,
        organization: &str,
        application: &str,
    ) -> Result<Self, StoreError> {
        directories::ProjectDirs::from(qualifier, organization, application)
            .map(|dirs| Self::in_dir(dirs.config_dir()))
            .ok_or(StoreError::NoConfigDir)
    }

    /// The store in `dir` (for tests, tools with their own layout, a mounted secret volume).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the refresh token of `client_id`.
    pub fn path(&self, client_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(file_name(client_id)?))
    }

    /// The lock file beside [`path`](Self::path): `refresh-token-<client id>.lock`.
    fn lock_path(&self, client_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(format!("{}.lock", file_name(client_id)?)))
    }

    fn create_dir(&self) -> Result<(), StoreError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .map_err(StoreError::io("create the directory", &self.dir))
    }
}

/// `refresh-token-<client id>`, the client id's bytes outside `A-Z a-z 0-9 - _` as `%XX`.
fn file_name(client_id: &str) -> Result<String, StoreError> {
    if client_id.is_empty() || client_id.len() > 128 {
        return Err(StoreError::InvalidClientId);
    }
    let mut name = String::from("refresh-token-");
    for b in client_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(name)
}

/// Makes every temporary file name of this process unique.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl RefreshTokenStore for FileStore {
    fn load(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        let path = self.path(client_id)?;
        match fs::read_to_string(&path) {
            Ok(token) => Ok(Some(token.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path)(e)),
        }
    }

    fn save(&self, client_id: &str, refresh_token: &str) -> Result<(), StoreError> {
        let path = self.path(client_id)?;
        self.create_dir()?;
        let temporary = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            file_name(client_id)?,
            std::process::id(),
            TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        let mut written = write_new(&temporary, refresh_token.as_bytes());
        if written
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::AlreadyExists)
        {
            // Left by a run that had this pid (a restarted container) and was killed mid-save:
            // this process never used the name before, so no writer of it does. The file
            // holds a refresh token: remove it, then write afresh.
            let _ = fs::remove_file(&temporary);
            written = write_new(&temporary, refresh_token.as_bytes());
        }
        let written = written
            .map_err(StoreError::io("write", &temporary))
            .and_then(|()| fs::rename(&temporary, &path).map_err(StoreError::io("replace", &path)));
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written?;
        // Makes the rename itself durable; a failure here leaves a whole file in place.
        #[cfg(unix)]
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        let path = self.path(client_id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io("delete", &path)(e))
            }
            _ => Ok(()),
        }
    }
}

/// Takes the advisory lock on the file at `path` (created with mode 0600 if missing) without
/// waiting: `Ok(None)` while another process holds it.
fn try_lock_file(path: &Path) -> io::Result<Option<File>> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Holds a lock file's lock until dropped.
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file would release it too; this says so.
        let _ = self.0.unlock();
    }
}

/// Creates `path` (it must not exist) with mode 0600, writes `bytes` and syncs them.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl SignIn {
    /// The one call for command-line tools: a [`RefreshToken`] source for
    /// [`VeracityAuthLayer::new`](crate::VeracityAuthLayer::new), signing in only when
    /// needed, every rotation persisted in `store`.
    ///
    /// 1. The refresh token stored for this app is tried with one refresh. If the provider
    ///    accepts it, no browser is involved and the access token obtained serves the first
    ///    request.
    /// 2. If there is none, or the provider refused it ([`Error::SignInRequired`]: expired,
    ///    revoked, rotated away), the store is read once more (another process of the tool
    ///    may just have rotated it) and then the user signs in ([`SignIn::run`]: the URL is
    ///    printed, or opened in a browser with feature `open-browser`, or handed to
    ///    [`SignIn::on_authorize_url`]). The new refresh token is stored.
    /// 3. The source stores every rotated refresh token (a [`RefreshToken::on_rotate`] hook
    ///    of your own runs as well); a failure to store one is logged (`tracing`, target
    ///    `veracity_auth::sign_in`), not fatal: the source goes on with the new token in
    ///    memory. Before each refresh it reads the store under its lock (a [`FileStore`]'s
    ///    lock file), and after a refused one it reads it again: a token another process of
    ///    the tool rotated, or stored after a new sign-in, is used instead of signing in.
    ///
    /// Other failures of the first refresh (the network, the provider's `5xx`) are returned
    /// as they are, without a sign-in: the stored token may well be fine. A store that cannot
    /// be read or written fails with [`SignInError::Store`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), veracity_auth::Error> {
    /// use veracity_auth::{Authenticator, FileStore, SignIn, VeracityAuthLayer};
    ///
    /// let store = FileStore::for_app("com", "Example", "my-tool")?;
    /// let source = SignIn::new("my-app-client-id").restore_or_sign_in(store).await?;
    /// let auth = VeracityAuthLayer::new(Authenticator::builder(source).api_key("api-key").build()?);
    /// # Ok(()) }
    /// ```
    pub async fn restore_or_sign_in(
        &self,
        store: impl RefreshTokenStore,
    ) -> Result<RefreshToken, Error> {
        // A `FileStore` has a lock file against other processes of the tool.
        let any: &dyn Any = &store;
        let files = any
            .downcast_ref::<FileStore>()
            .or_else(|| any.downcast_ref::<Arc<FileStore>>().map(|files| &**files))
            .cloned();
        let store: Arc<dyn RefreshTokenStore> = Arc::new(store);
        let client_id = self.client_id();
        let hook: Arc<dyn StoreHook> = Arc::new(Persisted {
            store: Arc::clone(&store),
            client_id: client_id.to_owned(),
            files,
        });
        let load = || store.load(client_id).map_err(stored);
        if let Some(refresh_token) = load()? {
            match self.restore(&hook, &refresh_token).await {
                Err(e) if e.is_sign_in_required() => {
                    tracing::info!(target: "veracity_auth::sign_in", "the stored refresh token was refused");
                    if let Some(newer) = load()?.filter(|t| *t != refresh_token) {
                        match self.restore(&hook, &newer).await {
                            Err(e) if e.is_sign_in_required() => {}
                            other => return other,
                        }
                    }
                }
                other => return other,
            }
        }
        let signed_in = self.run().await?;
        let refresh_token = signed_in
            .refresh_token()
            .ok_or(Error::SignIn(SignInError::NoRefreshToken))?;
        store.save(client_id, refresh_token).map_err(stored)?;
        Ok(signed_in.into_refresh_token()?.with_store(hook))
    }

    /// A source for a stored refresh token, checked with one refresh.
    async fn restore(
        &self,
        store: &Arc<dyn StoreHook>,
        refresh_token: &str,
    ) -> Result<RefreshToken, Error> {
        let source = self
            .refresh_token(refresh_token)
            .with_store(Arc::clone(store));
        let token = source.fetch().await?;
        tracing::debug!(target: "veracity_auth::sign_in", "restored the stored sign-in");
        Ok(source.initial_access_token(token))
    }
}

fn stored(e: StoreError) -> Error {
    e.into()
}

/// A store error is a [`SignInError::Store`], so `?` works in functions returning [`Error`].
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::SignIn(SignInError::Store(e))
    }
}

/// The store of a sign-in as its [`RefreshToken`] uses it: every rotation stored, the stored
/// token read again, and, for a [`FileStore`], its lock file.
struct Persisted {
    store: Arc<dyn RefreshTokenStore>,
    client_id: String,
    /// The store, when it is a `FileStore`: it has a lock file.
    files: Option<FileStore>,
}

impl StoreHook for Persisted {
    fn load(&self) -> Option<String> {
        self.store.load(&self.client_id).unwrap_or_else(|e| {
            tracing::warn!(
                target: "veracity_auth::sign_in",
                error = %e,
                "could not read the stored refresh token"
            );
            None
        })
    }

    fn save(&self, refresh_token: &str) {
        if let Err(e) = self.store.save(&self.client_id, refresh_token) {
            tracing::warn!(
                target: "veracity_auth::sign_in",
                error = %e,
                "could not store the rotated refresh token; the next run will sign in again"
            );
        }
    }

    fn has_lock(&self) -> bool {
        self.files.is_some()
    }

    fn try_lock(&self) -> Option<StoreGuard> {
        let Some(files) = &self.files else {
            return Some(Box::new(()));
        };
        let locked = files.create_dir().and_then(|()| {
            let path = files.lock_path(&self.client_id)?;
            try_lock_file(&path).map_err(StoreError::io("lock", &path))
        });
        match locked {
            Ok(Some(file)) => Some(Box::new(FileLock(file))),
            Ok(None) => None,
            // No lock to be had here (a read-only directory, a file system without locks):
            // refresh without one, as with a store that has none.
            Err(e) => {
                tracing::warn!(
                    target: "veracity_auth::sign_in",
                    error = %e,
                    "refreshing without the lock against other processes"
                );
                Some(Box::new(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_leave_the_directory() {
        assert_eq!(
            file_name("3f2b0c1e-aaaa-4bbb-8ccc-0123456789ab").unwrap(),
            "refresh-token-3f2b0c1e-aaaa-4bbb-8ccc-0123456789ab"
        );
        for (id, name) in [
            ("..", "refresh-token-%2E%2E"),
            (
                "../../etc/passwd",
                "refresh-token-%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            ),
            ("a\\b", "refresh-token-a%5Cb"),
            (".hidden", "refresh-token-%2Ehidden"),
            ("a b\0", "refresh-token-a%20b%00"),
            ("é", "refresh-token-%C3%A9"),
        ] {
            assert_eq!(file_name(id).unwrap(), name, "{id:?}");
        }
        assert!(matches!(file_name(""), Err(StoreError::InvalidClientId)));
        assert!(file_name(&"a".repeat(128)).is_ok());
        assert!(matches!(
            file_name(&"a".repeat(129)),
            Err(StoreError::InvalidClientId)
        ));
        // Distinct ids, distinct files.
        assert_ne!(file_name("a/b").unwrap(), file_name("a%2Fb").unwrap());
    }

    #[test]
    fn the_default_store_lives_in_the_config_directory() {
        // Only where the platform has a home directory; then it ends in the crate's name.
        if let Ok(store) = FileStore::new() {
            assert!(store.dir().ends_with("veracity-auth"), "{store:?}");
        }
    }
}
