//! A sign-in that lasts across runs: the refresh-token store ([`FileStore`]) and
//! [`SignIn::restore_or_sign_in`], against the embedded mock over real loopback connections.
//! A "run" is one `restore_or_sign_in` call with a fresh `SignIn` and store value over the same
//! directory, as a second process of the tool would make it.
#![cfg(feature = "sign-in")]

use crate::common;
use crate::common::account::{for_mock, layer_over};
use veracity_auth::TokenEndpoint;

use common::child::{self, Child};
use common::gateway::recording_mock;
use common::runtimes;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use crate::browser::*;
use crate::common::gateway::get_workspace;
use http::StatusCode;
use veracity_auth::{
    CachePolicy, Error, FileStore, RefreshToken, RefreshTokenStore, SignIn, SignInError,
    StoreError, TokenSource, VeracityAuthLayer,
};
use veracity_auth_mock::MockVeracity;

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "veracity-auth-store-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    /// Where the store lives: a directory the store has to create.
    fn store_dir(&self) -> PathBuf {
        self.0.join("config").join("my-tool")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A sign-in against the mock whose browser is played by a task of the test, counting the
/// URLs it was handed.
fn tool(mock: &MockVeracity, browsed: &Arc<AtomicUsize>) -> SignIn {
    let browsed = Arc::clone(browsed);
    sign_in(mock).on_authorize_url(move |url| {
        browsed.fetch_add(1, Ordering::SeqCst);
        let url = url.to_owned();
        tokio::spawn(async move {
            let (status, page) = browse(url, |l| l).await;
            assert_eq!(status, StatusCode::OK, "{page}");
        });
    })
}

fn stored(dir: &Path, mock: &MockVeracity) -> String {
    fs::read_to_string(FileStore::in_dir(dir).path(mock.client_id()).unwrap()).unwrap()
}

/// The files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The refresh tokens presented to the mock's refresh grant, in order.
fn presented(mock: &MockVeracity) -> Vec<String> {
    token_requests(mock, "refresh_token")
        .iter()
        .map(|form| field(form, "refresh_token").to_owned())
        .collect()
}

#[tokio::test]
async fn a_second_run_with_the_stored_token_makes_no_authorize_request() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("second-run");
    let browsed = Arc::new(AtomicUsize::new(0));

    // First run: nothing stored, so the user signs in; the refresh token is stored.
    let first = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    assert_eq!(mock.stats().authorize_requests, 1);
    assert_eq!(browsed.load(Ordering::SeqCst), 1);
    let signed_in_token = stored(&tmp.store_dir(), &mock);
    assert!(signed_in_token.starts_with("mock-rt-"), "{signed_in_token}");
    // The sign-in's access token serves the first request: no refresh.
    let response = get_workspace(&layer_over(first, &mock), &mock)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().refresh_token_grants, 0);

    // Second run: the stored token is accepted; no authorize request, no browser.
    let second = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let stats = mock.stats();
    assert_eq!(stats.authorize_requests, 1);
    assert_eq!(stats.authorization_code_grants, 1);
    assert_eq!(browsed.load(Ordering::SeqCst), 1);
    assert_eq!(stats.refresh_token_grants, 1);
    assert_eq!(presented(&mock), std::slice::from_ref(&signed_in_token));
    // The refresh rotated the token, and the rotation was stored.
    let rotated = stored(&tmp.store_dir(), &mock);
    assert!(rotated.starts_with("mock-rt-") && rotated != signed_in_token);

    // The access token of that refresh serves the second run's first request.
    let response = get_workspace(&layer_over(second, &mock), &mock)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().refresh_token_grants, 1);
    assert_eq!(mock.stats().rejected_refresh_tokens, 0);
}

#[tokio::test]
async fn every_rotation_is_persisted_atomically_in_a_file_only_the_user_can_read() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("rotation");
    let browsed = Arc::new(AtomicUsize::new(0));
    let source = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    // Each round's rejection may force a refresh at once.
    let layer = VeracityAuthLayer::new(
        for_mock(source, &mock)
            .cache_policy(CachePolicy::default().rejection_interval(std::time::Duration::ZERO))
            .build()
            .unwrap(),
    );
    // The sign-in's access token serves the first request.
    let response = get_workspace(&layer, &mock).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().refresh_token_grants, 0);

    let mut previous = stored(&tmp.store_dir(), &mock);
    for round in 1..=3 {
        // The gateway stops accepting the access token: the layer refreshes (the provider
        // rotates the refresh token) and replays.
        mock.revoke_all_tokens();
        let response = get_workspace(&layer, &mock).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(mock.stats().refresh_token_grants, round);
        // The refresh presented the stored token, and the file now holds its rotation.
        assert_eq!(presented(&mock).last(), Some(&previous));
        let now = stored(&tmp.store_dir(), &mock);
        assert!(now.starts_with("mock-rt-") && now != previous, "{now}");
        previous = now;
        // The token's file and the lock file refreshes take against other processes; no
        // temporary file left behind.
        assert_eq!(
            files(&tmp.store_dir()),
            [
                format!("refresh-token-{}", mock.client_id()),
                format!("refresh-token-{}.lock", mock.client_id())
            ]
        );
    }
    assert_eq!(mock.stats().rejected_refresh_tokens, 0);

    #[cfg(unix)]
    {
        let path = FileStore::in_dir(tmp.store_dir())
            .path(mock.client_id())
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&path.with_extension("lock")), 0o600);
        // The directories we created are the user's alone, never world-writable.
        assert_eq!(mode(&tmp.store_dir()), 0o700);
        assert_eq!(mode(&tmp.0.join("config")), 0o700);
    }
}

#[cfg(unix)]
#[test]
fn a_token_written_over_a_readable_file_is_0600_and_an_existing_directory_is_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("mode");
    let dir = tmp.store_dir();
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    let store = FileStore::in_dir(&dir);
    let path = store.path("app").unwrap();
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    store.save("app", "rt-new").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "rt-new");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(files(&dir), ["refresh-token-app"]);
}

#[test]
fn the_file_store_loads_saves_and_deletes_one_file_per_client_id() {
    let tmp = TempDir::new("crud");
    let store = FileStore::in_dir(tmp.store_dir());
    assert_eq!(store.load("a").unwrap(), None);
    store.delete("a").unwrap(); // nothing to delete is fine
    store.save("a", "rt-a").unwrap();
    store.save("../b", "rt-b\n").unwrap();
    assert_eq!(store.load("a").unwrap().as_deref(), Some("rt-a"));
    assert_eq!(store.load("../b").unwrap().as_deref(), Some("rt-b"));
    // The client id `../b` stays inside the directory.
    assert_eq!(
        files(&tmp.store_dir()),
        ["refresh-token-%2E%2E%2Fb", "refresh-token-a"]
    );
    store.delete("a").unwrap();
    assert_eq!(store.load("a").unwrap(), None);
    assert_eq!(files(&tmp.store_dir()), ["refresh-token-%2E%2E%2Fb"]);
    assert!(matches!(
        store.save("", "rt"),
        Err(StoreError::InvalidClientId)
    ));
    // An empty file is no token.
    fs::write(store.path("a").unwrap(), "\n").unwrap();
    assert_eq!(store.load("a").unwrap(), None);
}

#[test]
fn a_reader_concurrent_with_writers_always_reads_a_whole_token() {
    /// Writer `w`'s `i`-th token: its own length, checkable from its prefix.
    fn token(w: usize, i: usize) -> String {
        format!("rt-{w}-{i}-{}", "x".repeat((i * 37 + w * 11) % 3000))
    }
    fn whole(t: &str) -> bool {
        let mut parts = t.splitn(4, '-');
        let (Some("rt"), Some(w), Some(i), Some(xs)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(w), Ok(i)) = (w.parse::<usize>(), i.parse::<usize>()) else {
            return false;
        };
        xs.bytes().all(|b| b == b'x') && xs.len() == (i * 37 + w * 11) % 3000
    }

    let tmp = TempDir::new("concurrent");
    let store = Arc::new(FileStore::in_dir(tmp.store_dir()));
    store.save("app", &token(0, 0)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) {
                    let t = store.load("app").unwrap().expect("a token is always there");
                    assert!(whole(&t), "a torn read: {} bytes", t.len());
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..150 {
                    store.save("app", &token(w, i)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
    // The last rename wins: one writer's last token, whole; no temporary file left.
    let last = store.load("app").unwrap().unwrap();
    assert!(
        (0..4).any(|w| last == token(w, 149)),
        "{} bytes",
        last.len()
    );
    assert_eq!(files(&tmp.store_dir()), ["refresh-token-app"]);
}

#[tokio::test]
async fn a_refused_stored_token_leads_to_a_new_sign_in_and_the_new_token_is_stored() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("refused");
    let browsed = Arc::new(AtomicUsize::new(0));
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let first = stored(&tmp.store_dir(), &mock);

    // The provider revokes it (the user signed out everywhere, an admin revoked it).
    mock.revoke_refresh_tokens();
    let source = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let stats = mock.stats();
    assert_eq!(stats.rejected_refresh_tokens, 1);
    assert_eq!(presented(&mock), std::slice::from_ref(&first));
    assert_eq!(stats.authorize_requests, 2);
    assert_eq!(stats.authorization_code_grants, 2);
    assert_eq!(browsed.load(Ordering::SeqCst), 2);
    let second = stored(&tmp.store_dir(), &mock);
    assert!(second.starts_with("mock-rt-") && second != first);

    // The new token works: the next run restores it without a sign-in.
    drop(source);
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    assert_eq!(mock.stats().authorize_requests, 2);
    assert_eq!(presented(&mock).last(), Some(&second));
}

/// A store whose first read returns a stale token: as when another process of the tool
/// rotated the stored token between this run's read and its refresh.
#[derive(Debug)]
struct StaleOnce {
    inner: FileStore,
    stale: Mutex<Option<String>>,
}

impl RefreshTokenStore for StaleOnce {
    fn load(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        match self.stale.lock().unwrap().take() {
            Some(stale) => Ok(Some(stale)),
            None => self.inner.load(client_id),
        }
    }
    fn save(&self, client_id: &str, refresh_token: &str) -> Result<(), StoreError> {
        self.inner.save(client_id, refresh_token)
    }
    fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        self.inner.delete(client_id)
    }
}

#[tokio::test]
async fn a_token_rotated_by_another_process_is_picked_up_instead_of_signing_in_again() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("other-process");
    let browsed = Arc::new(AtomicUsize::new(0));
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let spent = stored(&tmp.store_dir(), &mock);
    // "Another process" refreshes: the provider rotates the token, that process stores it.
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let current = stored(&tmp.store_dir(), &mock);

    // This process read the store before that rotation.
    let store = StaleOnce {
        inner: FileStore::in_dir(tmp.store_dir()),
        stale: Mutex::new(Some(spent.clone())),
    };
    tool(&mock, &browsed)
        .restore_or_sign_in(store)
        .await
        .unwrap();
    let stats = mock.stats();
    assert_eq!(stats.rejected_refresh_tokens, 1);
    assert_eq!(presented(&mock), [spent.clone(), spent, current.clone()]);
    assert_eq!(stats.authorize_requests, 1, "no second sign-in");
    assert_eq!(browsed.load(Ordering::SeqCst), 1);
    assert_ne!(stored(&tmp.store_dir(), &mock), current);
}

/// Issue 17, item 6. Two runs of a tool restore one stored sign-in; the second one's refresh
/// rotates the stored token. The first run's next refresh must not present the rotated-away
/// token and end its sign-in: with a `FileStore` it reads the store under its lock first; with
/// a store that has no lock, the refused refresh is retried once with the stored token.
#[tokio::test]
async fn a_token_rotated_by_another_run_does_not_end_this_runs_sign_in() {
    // `FileStore` has a lock file; the same files behind another store type have none.
    rotated_by_another_run(|dir: &Path| FileStore::in_dir(dir), true).await;
    let lockless = |dir: &Path| StaleOnce {
        inner: FileStore::in_dir(dir),
        stale: Mutex::new(None),
    };
    rotated_by_another_run(lockless, false).await;
}

async fn rotated_by_another_run<S: RefreshTokenStore>(store: impl Fn(&Path) -> S, lock: bool) {
    let mock = recording_mock().await;
    let tmp = TempDir::new("rotated-by-another-run");
    let dir = tmp.store_dir();
    let browsed = Arc::new(AtomicUsize::new(0));
    tool(&mock, &browsed)
        .restore_or_sign_in(store(&dir))
        .await
        .unwrap();
    let this_run = tool(&mock, &browsed)
        .restore_or_sign_in(store(&dir))
        .await
        .unwrap();
    this_run.fetch().await.unwrap(); // the access token its restore got
    // Another run refreshes: the provider rotates the stored token.
    tool(&mock, &browsed)
        .restore_or_sign_in(store(&dir))
        .await
        .unwrap();
    let rotated_by_the_other = stored(&dir, &mock);

    this_run.fetch().await.unwrap();
    assert_eq!(
        presented(&mock).last(),
        Some(&rotated_by_the_other),
        "lock {lock}"
    );
    let stats = mock.stats();
    assert_eq!(stats.authorize_requests, 1, "no second sign-in");
    // Without a lock, the rotated-away token went out once before the store was read.
    assert_eq!(stats.reused_refresh_tokens, u64::from(!lock), "lock {lock}");
    assert_ne!(stored(&dir, &mock), rotated_by_the_other);
}

/// Issue 17, item 4, with a store. A refresh sent its token (the provider spent it and
/// answers an hour later), then its runtime went idle, holding the store's lock; meanwhile
/// the user signed in again in another run, which stored a new refresh token. Past the
/// stalled exchange's deadline, a fetch on another runtime refreshes with the stored token
/// (never the spent one) under the lock it takes over, and leaves the lock free.
#[test]
fn a_fetch_past_an_exchange_stalled_after_sending_uses_a_newer_stored_token() {
    const EXCHANGE: Duration = Duration::from_secs(2);
    let server = runtimes::server();
    let mock = server.block_on(recording_mock());
    let tmp = TempDir::new("stalled-after-sending");
    let dir = tmp.store_dir();
    FileStore::in_dir(&dir)
        .save(mock.client_id(), &mock.issue_refresh_token())
        .unwrap();
    let browsed = Arc::new(AtomicUsize::new(0));
    let rt_b = runtimes::current_thread();
    let source = rt_b
        .block_on(tool(&mock, &browsed).restore_or_sign_in(FileStore::in_dir(&dir)))
        .unwrap()
        .exchange_timeout(EXCHANGE);
    rt_b.block_on(source.fetch()).unwrap(); // the access token of the restore
    let spent = stored(&dir, &mock);
    mock.delay_user_grant_answers(Duration::from_secs(3600), 1);

    let newer = std::thread::scope(|scope| {
        let (stalled, stalled_rx) = mpsc::channel();
        let (done, done_rx) = mpsc::channel::<()>();
        let (mock, on_a) = (&mock, source.clone());
        scope.spawn(move || {
            let rt_a = runtimes::current_thread();
            let started = std::time::Instant::now();
            let mut fetch = rt_a.spawn(async move { on_a.fetch().await });
            // Runs until the provider has the request, then goes idle.
            rt_a.block_on(async {
                while mock.stats().refresh_token_grants < 2 {
                    if fetch.is_finished() {
                        panic!("the refresh ended unanswered: {:?}", (&mut fetch).await);
                    }
                    tokio::task::yield_now().await;
                }
            });
            stalled.send(started).unwrap();
            let _ = done_rx.recv();
        });
        let a_started = stalled_rx.recv().unwrap();
        // Another run signs in again and stores its refresh token.
        let newer = mock.issue_refresh_token();
        FileStore::in_dir(&dir)
            .save(mock.client_id(), &newer)
            .unwrap();
        rt_b.block_on(async {
            tokio::time::timeout(EXCHANGE * 3, source.fetch())
                .await
                .expect("never hangs")
                .unwrap();
        });
        assert!(a_started.elapsed() >= EXCHANGE, "not before the deadline");
        done.send(()).unwrap();
        newer
    });
    let stats = mock.stats();
    // The restore's, the stalled one's (spending `spent`, unanswered, so not in the log yet),
    // and the one with the newer token.
    assert_eq!(stats.refresh_token_grants, 3);
    assert_eq!(presented(&mock).last(), Some(&newer));
    assert!(!presented(&mock).contains(&spent));
    assert_eq!(stats.reused_refresh_tokens, 0);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    let rotated = stored(&dir, &mock);
    assert!(rotated.starts_with("mock-rt-") && rotated != newer);
    // The lock is free: the next run restores without waiting for it (a lock left held
    // would hold it up for its whole exchange timeout, 2 minutes, then fail).
    let start = std::time::Instant::now();
    rt_b.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(60),
            tool(&mock, &browsed).restore_or_sign_in(FileStore::in_dir(&dir)),
        )
        .await
        .expect("the store's lock was left held")
        .unwrap();
    });
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(presented(&mock).last(), Some(&rotated));
    assert_eq!(mock.stats().authorize_requests, 0);
}

#[tokio::test]
async fn other_failures_of_the_first_refresh_are_returned_without_a_sign_in() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("outage");
    let browsed = Arc::new(AtomicUsize::new(0));
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let kept = stored(&tmp.store_dir(), &mock);
    mock.fail_token_requests(
        veracity_auth_mock::Fault::status(503),
        veracity_auth_mock::Times::Once,
    );
    let err = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap_err();
    assert!(!err.is_sign_in_required(), "{err}");
    assert_eq!(mock.stats().authorize_requests, 1);
    assert_eq!(
        stored(&tmp.store_dir(), &mock),
        kept,
        "the stored token is kept"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_store_that_cannot_be_written_is_a_typed_error() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("unwritable");
    // The store's "directory" is a file: nothing can be created in it.
    fs::create_dir_all(&tmp.0).unwrap();
    fs::write(tmp.0.join("file"), "").unwrap();
    let browsed = Arc::new(AtomicUsize::new(0));
    let err = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.0.join("file")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::SignIn(SignInError::Store(StoreError::Io { .. }))
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("mock-rt-"), "{err}");
}

/// Item 6: one sign-in, two APIs. The Data Workbench source and a Services API source share
/// one rotating refresh token: each refresh presents the token the previous one got, none is
/// spent twice, and every rotation is stored.
#[tokio::test]
async fn one_sign_in_feeds_two_apis_through_one_rotating_refresh_token() {
    let mock = recording_mock().await;
    let tmp = TempDir::new("two-apis");
    let browsed = Arc::new(AtomicUsize::new(0));
    let data_workbench = tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    let services = data_workbench.for_scope(mock.services_user_scope());

    // The Services source gets its own token: the sign-in's access token is for Data
    // Workbench and stays with that source.
    services.fetch().await.unwrap();
    assert_eq!(mock.stats().refresh_token_grants, 1);
    data_workbench.fetch().await.unwrap();
    assert_eq!(mock.stats().refresh_token_grants, 1);

    // Both refresh at once, many times: they take turns with the one refresh token.
    for _ in 0..10 {
        let (a, b) = tokio::join!(data_workbench.fetch(), services.fetch());
        a.unwrap();
        b.unwrap();
    }
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 21);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    let refreshes = token_requests(&mock, "refresh_token");
    let tokens: Vec<&str> = refreshes
        .iter()
        .map(|f| field(f, "refresh_token"))
        .collect();
    let mut distinct = tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        tokens.len(),
        "a refresh token was spent twice"
    );
    let scopes: Vec<&str> = refreshes.iter().map(|f| field(f, "scope")).collect();
    let for_services = format!("offline_access {}", mock.services_user_scope());
    let for_data_workbench = format!("offline_access {}", mock.user_scope());
    assert_eq!(scopes[0], for_services);
    assert_eq!(scopes.iter().filter(|s| **s == for_services).count(), 11);
    assert_eq!(
        scopes.iter().filter(|s| **s == for_data_workbench).count(),
        10
    );
    // The last rotation is the stored one: the next run restores it.
    let last = stored(&tmp.store_dir(), &mock);
    tool(&mock, &browsed)
        .restore_or_sign_in(FileStore::in_dir(tmp.store_dir()))
        .await
        .unwrap();
    assert_eq!(presented(&mock).last(), Some(&last));
    assert_eq!(mock.stats().rejected_refresh_tokens, 0);
    assert_eq!(mock.stats().authorize_requests, 1);
}

#[tokio::test]
async fn the_mock_answers_a_refresh_for_the_other_api_with_a_token_for_that_api() {
    let mock = MockVeracity::start().await.unwrap();
    let refresh_token = mock.issue_refresh_token();
    let scope = format!("offline_access {}", mock.services_user_scope());
    let (status, body) = post_form(
        &mock.user_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", mock.client_id()),
            ("refresh_token", &refresh_token),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], "83054ebf-1d7b-43f5-82ad-b2bde84d7b75");
    assert_eq!(body["scope"], scope.as_str());
    // The rotated refresh token still serves the sign-in's API.
    let rotated = body["refresh_token"].as_str().unwrap();
    let (status, body) = post_form(
        &mock.user_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", mock.client_id()),
            ("refresh_token", rotated),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resource"], "37c59c8d-cd9d-4cd5-b05a-e67f1650ee14");
}

#[test]
fn store_types_show_no_token() {
    let tmp = TempDir::new("debug");
    let store = FileStore::in_dir(tmp.store_dir());
    store.save("app", "rt-very-secret").unwrap();
    let sign_in = SignIn::new("app").on_authorize_url(|_| {});
    let source = RefreshToken::new("app", "rt-very-secret").for_scope("api://other/x");
    let err = StoreError::Io {
        action: "read",
        path: store.path("app").unwrap(),
        source: Arc::new(std::io::Error::other("denied")),
    };
    for shown in [
        format!("{store:?}"),
        format!("{sign_in:?}"),
        format!("{source:?}"),
        format!("{err} {err:?}"),
    ] {
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}

/// The same two runs with the OS keychain. Needs a keychain service and
/// `VERACITY_AUTH_KEYRING_TEST=1`; on Linux, for instance (package `gnome-keyring`):
/// `dbus-run-session -- sh -c 'echo -n pw | gnome-keyring-daemon --unlock --components=secrets;
/// VERACITY_AUTH_KEYRING_TEST=1 cargo test --all-features --test sign_in sign_in_store::keychain -- --ignored'`.
#[cfg(feature = "keyring")]
#[tokio::test]
#[ignore = "needs a keychain service (a Secret Service on D-Bus on Linux) and VERACITY_AUTH_KEYRING_TEST=1"]
async fn a_second_run_with_the_token_in_the_keychain_makes_no_authorize_request() {
    use veracity_auth::KeyringStore;
    if std::env::var_os("VERACITY_AUTH_KEYRING_TEST").is_none() {
        eprintln!("skipped: set VERACITY_AUTH_KEYRING_TEST=1 where a keychain service runs");
        return;
    }
    let mock = recording_mock().await;
    let browsed = Arc::new(AtomicUsize::new(0));
    let service = format!("veracity-auth-test-{}", std::process::id());
    let keychain = KeyringStore::new(&service);
    keychain.delete(mock.client_id()).unwrap();
    tool(&mock, &browsed)
        .restore_or_sign_in(KeyringStore::new(&service))
        .await
        .unwrap();
    let signed_in = keychain.load(mock.client_id()).unwrap().unwrap();
    tool(&mock, &browsed)
        .restore_or_sign_in(KeyringStore::new(&service))
        .await
        .unwrap();
    assert_eq!(mock.stats().authorize_requests, 1);
    assert_eq!(presented(&mock), std::slice::from_ref(&signed_in));
    let rotated = keychain.load(mock.client_id()).unwrap().unwrap();
    assert!(rotated.starts_with("mock-rt-") && rotated != signed_in);
    keychain.delete(mock.client_id()).unwrap();
    assert_eq!(keychain.load(mock.client_id()).unwrap(), None);
}

#[tokio::test]
async fn the_mock_counts_a_refresh_token_presented_again_after_it_was_rotated_away() {
    let mock = MockVeracity::start().await.unwrap();
    let first = mock.issue_refresh_token();
    let refresh = |refresh_token: String| {
        let (url, client_id) = (mock.user_token_url(), mock.client_id().to_owned());
        async move { refresh_grant(&url, &client_id, &refresh_token).await }
    };
    let (status, body) = refresh(first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Spent once, then presented again: refused, and counted as a reuse.
    let (status, body) = refresh(first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(mock.stats().reused_refresh_tokens, 1);
    // A revoked or unknown token is refused too, but it was never spent: no reuse.
    let revoked = mock.issue_refresh_token();
    mock.revoke_refresh_tokens();
    for token in [revoked, "mock-rt-never-issued".to_owned()] {
        let (status, _) = refresh(token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let stats = mock.stats();
    assert_eq!(stats.rejected_refresh_tokens, 3);
    assert_eq!(stats.reused_refresh_tokens, 1);
}

/// Runs [`child`] as `role` in a fresh process of this test binary, with `vars` set; its
/// standard output. Fails when the child fails.
fn run_child(role: &str, vars: &[(&str, &str)]) -> String {
    Child::new("sign_in_store::child", role)
        .envs(vars.iter().copied())
        .printed("child done")
}

/// The child side of the tests that need a process of their own; does nothing unless
/// [`run_child`] runs it.
#[test]
fn child() {
    let Some(role) = child::role() else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    match role.as_str() {
        "stale-temporary-file" => {
            // The temporary file this process's first save names, left behind by a run that
            // had the same pid (a container restarted) and was killed mid-save.
            let dir = PathBuf::from(var("CHILD_DIR"));
            fs::create_dir_all(&dir).unwrap();
            let stale = dir.join(format!(".refresh-token-app.{}-0.tmp", std::process::id()));
            fs::write(&stale, "rt-of-the-killed-run").unwrap();
            let store = FileStore::in_dir(&dir);
            store.save("app", "rt-new").unwrap();
            assert_eq!(store.load("app").unwrap().as_deref(), Some("rt-new"));
        }
        "share-the-store" => {
            // One refresh for each `go` from the parent, so that both refresh at once.
            let runtime = runtimes::current_thread();
            let mut tool = Tool::new(
                PathBuf::from(var("CHILD_DIR")),
                &var("CHILD_CLIENT_ID"),
                &var("CHILD_AUTHORIZE_URL"),
                &var("CHILD_TOKEN_URL"),
                &var("CHILD_SCOPE"),
            );
            println!("child ready");
            for go in std::io::stdin().lines() {
                if go.unwrap() != "go" {
                    break;
                }
                runtime.block_on(tool.refresh());
                println!("child refreshed");
            }
            println!("child saw: {}", tool.seen().line());
        }
        other => panic!("unknown child role {other}"),
    }
    println!("child done");
}

/// How many refreshes each process makes in the two-process test.
const ROTATIONS: usize = 100;

/// What one process of the two-process test saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Refreshes {
    refreshed: usize,
    sign_in_required: usize,
    sign_ins: usize,
    other_errors: usize,
}

impl Refreshes {
    fn line(&self) -> String {
        format!(
            "refreshed {} sign_in_required {} sign_ins {} other_errors {}",
            self.refreshed, self.sign_in_required, self.sign_ins, self.other_errors
        )
    }

    fn parse(output: &str) -> Self {
        let line = output
            .lines()
            .find_map(|l| l.strip_prefix("child saw: "))
            .unwrap_or_else(|| panic!("no counts from the child: {output}"));
        let n: Vec<usize> = line
            .split(' ')
            .skip(1)
            .step_by(2)
            .map(|n| n.parse().unwrap())
            .collect();
        Refreshes {
            refreshed: n[0],
            sign_in_required: n[1],
            sign_ins: n[2],
            other_errors: n[3],
        }
    }
}

/// One process of a tool whose sign-in is stored in a directory, refreshing one step at a
/// time and counting what happened. A sign-in it would start is counted and gives up after
/// a second (nobody plays the browser).
struct Tool {
    dir: PathBuf,
    sign_in: SignIn,
    sign_ins: Arc<AtomicUsize>,
    source: Option<RefreshToken>,
    seen: Refreshes,
}

impl Tool {
    fn new(
        dir: PathBuf,
        client_id: &str,
        authorize_url: &str,
        token_url: &str,
        scope: &str,
    ) -> Self {
        let sign_ins = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&sign_ins);
        let sign_in = SignIn::new(client_id)
            .authorize_url(authorize_url)
            .endpoint(TokenEndpoint::plain_http(token_url).unwrap())
            .scope(scope)
            .timeout(std::time::Duration::from_secs(1))
            .on_authorize_url(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        Tool {
            dir,
            sign_in,
            sign_ins,
            source: None,
            seen: Refreshes::default(),
        }
    }

    /// One refresh: the first restores the stored sign-in, the next ones fetch.
    async fn refresh(&mut self) {
        let fetched = match &self.source {
            Some(source) => source.fetch().await.map(drop),
            None => match self
                .sign_in
                .restore_or_sign_in(FileStore::in_dir(&self.dir))
                .await
            {
                Ok(source) => {
                    // The access token the restoring refresh got: no refresh.
                    source.fetch().await.unwrap();
                    self.source = Some(source);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match fetched {
            Ok(()) => self.seen.refreshed += 1,
            Err(e) if e.is_sign_in_required() => self.seen.sign_in_required += 1,
            Err(e) => {
                eprintln!("refresh failed: {e}");
                self.seen.other_errors += 1;
            }
        }
    }

    fn seen(&self) -> Refreshes {
        Refreshes {
            sign_ins: self.sign_ins.load(Ordering::SeqCst),
            ..self.seen
        }
    }
}

/// Issue 17, item 6. Two processes of one tool share a `FileStore` and refresh, at the same
/// time, 100 times each against one provider that rotates every refresh token: the lock file
/// keeps them from spending one refresh token twice, and each picks up the other's rotation
/// from the store, so neither is ever asked to sign in again.
#[test]
fn two_processes_sharing_a_file_store_never_spend_a_refresh_token_twice() {
    use std::io::{BufRead, BufReader, Write};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mock = runtime.block_on(recording_mock());
    let tmp = TempDir::new("two-processes");
    let dir = tmp.store_dir();
    FileStore::in_dir(&dir)
        .save(mock.client_id(), &mock.issue_refresh_token())
        .unwrap();

    // The child refreshes for the Services API, this process for Data Workbench: the
    // provider's log then tells who presented what.
    let mut child = Child::new("sign_in_store::child", "share-the-store")
        .env("CHILD_DIR", &dir)
        .env("CHILD_CLIENT_ID", mock.client_id())
        .env("CHILD_AUTHORIZE_URL", mock.authorize_url())
        .env("CHILD_TOKEN_URL", mock.user_token_url())
        .env("CHILD_SCOPE", mock.services_user_scope())
        .spawn();
    let mut child_out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("child ready") {
        line.clear();
        assert_ne!(
            child_out.read_line(&mut line).unwrap(),
            0,
            "the child ended"
        );
    }
    // Round by round, both refresh at the same moment.
    let mut tool = Tool::new(
        dir.clone(),
        mock.client_id(),
        &mock.authorize_url(),
        &mock.user_token_url(),
        mock.user_scope(),
    );
    let mut go = child.stdin.take().unwrap();
    for _ in 0..ROTATIONS {
        writeln!(go, "go").unwrap();
        runtime.block_on(tool.refresh());
        while !line.contains("child refreshed") {
            line.clear();
            assert_ne!(
                child_out.read_line(&mut line).unwrap(),
                0,
                "the child ended"
            );
        }
        line.clear();
    }
    drop(go);
    let here = tool.seen();
    let mut output = String::new();
    std::io::Read::read_to_string(&mut child_out, &mut output).unwrap();
    assert!(child.wait().unwrap().success(), "{output}");
    let there = Refreshes::parse(&output);

    let refreshes = token_requests(&mock, "refresh_token");
    let tokens: Vec<&str> = refreshes
        .iter()
        .map(|f| field(f, "refresh_token"))
        .collect();
    let mut distinct = tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let switches = refreshes
        .windows(2)
        .filter(|w| field(&w[0], "scope") != field(&w[1], "scope"))
        .count();
    let stats = mock.stats();
    println!(
        "this process: {}; the child: {}; refresh grants {}, refresh tokens spent twice {}, \
         refused {}, authorize requests {}, turns between the processes {switches}",
        here.line(),
        there.line(),
        stats.refresh_token_grants,
        stats.reused_refresh_tokens,
        stats.rejected_refresh_tokens,
        stats.authorize_requests,
    );
    let clean = Refreshes {
        refreshed: ROTATIONS,
        ..Refreshes::default()
    };
    assert_eq!(here, clean);
    assert_eq!(there, clean);
    assert_eq!(stats.reused_refresh_tokens, 0);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    assert_eq!(stats.authorize_requests, 0);
    assert_eq!(stats.refresh_token_grants, 2 * ROTATIONS as u64);
    assert_eq!(
        distinct.len(),
        tokens.len(),
        "a refresh token was spent twice"
    );
    assert!(
        switches >= 2,
        "the processes did not refresh at the same time"
    );
    // The store holds the last rotation, unspent.
    let last = stored(&dir, &mock);
    assert!(last.starts_with("mock-rt-") && !tokens.contains(&last.as_str()));
    drop(runtime);
}

#[test]
fn a_stale_temporary_file_never_blocks_a_save() {
    let tmp = TempDir::new("stale-temporary");
    let dir = tmp.store_dir();
    run_child(
        "stale-temporary-file",
        &[("CHILD_DIR", dir.to_str().unwrap())],
    );
    assert_eq!(
        FileStore::in_dir(&dir).load("app").unwrap().as_deref(),
        Some("rt-new")
    );
    // The stale file held a refresh token: it is gone, and no temporary file is left.
    assert_eq!(files(&dir), ["refresh-token-app"]);
}
