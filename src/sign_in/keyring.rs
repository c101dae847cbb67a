//! [`KeyringStore`]: refresh tokens in the operating system's keychain (feature `keyring`).

use keyring::{Entry, Error as KeyringError};

use super::RefreshTokenStore;
use crate::StoreError;

/// Refresh tokens in the operating system's keychain (feature `keyring`, the `keyring` crate
/// 4): Keychain Services on macOS, the Credential Manager on Windows, the Secret Service
/// (GNOME Keyring, KWallet, KeePassXC, over D-Bus, in pure Rust: no system library) on Linux
/// and the BSDs. One entry per client id, under the service name given to
/// [`KeyringStore::new`], the client id as the user name.
///
/// A headless Linux machine usually runs no Secret Service: every call then fails with
/// [`StoreError::Keyring`]; use a [`FileStore`](super::FileStore) there.
#[derive(Clone, Debug)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// Entries under `service` (your tool's name, say `"my-tool"`).
    pub fn new(service: impl Into<String>) -> Self {
        KeyringStore {
            service: service.into(),
        }
    }

    /// The service name of the entries.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, client_id: &str) -> Result<Entry, StoreError> {
        if client_id.is_empty() {
            return Err(StoreError::InvalidClientId);
        }
        Entry::new(&self.service, client_id).map_err(failed)
    }
}

impl Default for KeyringStore {
    /// Entries under the service `veracity-auth`.
    fn default() -> Self {
        KeyringStore::new("veracity-auth")
    }
}

impl RefreshTokenStore for KeyringStore {
    fn load(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        match self.entry(client_id)?.get_password() {
            Ok(token) => Ok(Some(token.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    fn save(&self, client_id: &str, refresh_token: &str) -> Result<(), StoreError> {
        self.entry(client_id)?
            .set_password(refresh_token)
            .map_err(failed)
    }

    fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        match self.entry(client_id)?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }
}

/// The keychain's error as text that cannot hold the secret: variants that carry the stored
/// bytes are described, never displayed.
fn failed(e: KeyringError) -> StoreError {
    let message = match e {
        KeyringError::PlatformFailure(e) => format!("platform failure: {e}"),
        KeyringError::NoStorageAccess(e) => format!("no access to the keychain: {e}"),
        KeyringError::NoEntry => "no entry".to_owned(),
        KeyringError::BadEncoding(_) => "the stored value is not UTF-8".to_owned(),
        KeyringError::BadDataFormat(..) => "the stored value is malformed".to_owned(),
        KeyringError::NoDefaultStore => {
            "no keychain service is available (on Linux: no Secret Service on D-Bus)".to_owned()
        }
        KeyringError::Ambiguous(entries) => {
            format!("{} keychain entries match", entries.len())
        }
        KeyringError::TooLong(name, limit) => {
            format!("`{name}` is longer than the keychain's limit of {limit}")
        }
        KeyringError::Invalid(name, reason) => format!("`{name}` is invalid: {reason}"),
        other => match other {
            KeyringError::BadStoreFormat(reason) => format!("the keychain is malformed: {reason}"),
            KeyringError::NotSupportedByStore(what) => format!("not supported: {what}"),
            _ => "keychain error".to_owned(),
        },
    };
    StoreError::Keyring(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_and_debug() {
        let store = KeyringStore::new("my-tool");
        assert_eq!(store.service(), "my-tool");
        assert_eq!(KeyringStore::default().service(), "veracity-auth");
        assert_eq!(
            format!("{store:?}"),
            r#"KeyringStore { service: "my-tool" }"#
        );
        assert!(matches!(store.load(""), Err(StoreError::InvalidClientId)));
    }

    #[test]
    fn errors_never_show_the_stored_bytes() {
        let secret = b"rt-very-secret".to_vec();
        for e in [
            KeyringError::BadEncoding(secret.clone()),
            KeyringError::BadDataFormat(secret, "bad".into()),
        ] {
            let shown = failed(e);
            assert!(!format!("{shown} {shown:?}").contains("very-secret"));
        }
    }

    /// Needs a keychain: a Secret Service on the session D-Bus on Linux (none runs in CI or
    /// on a headless machine). CI runs the ignored tests (`--include-ignored`), so it also
    /// needs `VERACITY_AUTH_KEYRING_TEST=1`:
    /// `VERACITY_AUTH_KEYRING_TEST=1 cargo test --features keyring --lib keyring -- --ignored`
    /// (on Linux, inside `dbus-run-session` with `gnome-keyring-daemon --unlock
    /// --components=secrets` running, as `tests/sign_in_store.rs` shows).
    #[test]
    #[ignore = "needs a keychain service (a Secret Service on D-Bus on Linux) and VERACITY_AUTH_KEYRING_TEST=1"]
    fn a_token_round_trips_through_the_keychain() {
        if std::env::var_os("VERACITY_AUTH_KEYRING_TEST").is_none() {
            eprintln!("skipped: set VERACITY_AUTH_KEYRING_TEST=1 where a keychain service runs");
            return;
        }
        let store = KeyringStore::new("veracity-auth-test");
        let id = "veracity-auth-test-client";
        store.save(id, "rt-1").unwrap();
        assert_eq!(store.load(id).unwrap().as_deref(), Some("rt-1"));
        store.save(id, "rt-2").unwrap();
        assert_eq!(store.load(id).unwrap().as_deref(), Some("rt-2"));
        store.delete(id).unwrap();
        assert_eq!(store.load(id).unwrap(), None);
        store.delete(id).unwrap();
    }
}
