//! Workspace storage as the SAS endpoints see it: where each dataset's files live (container
//! and folder), which container each File storage name means, which subscription keys belong
//! to dataset-scoped accounts, the lifetime cap, the stored access policies of each container
//! (and which of them the blob server already holds), and the SAS handed out.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::blob_admin::BlobServer;
use super::stats::{IssuedSas, SasAccess};

/// Where one dataset's files live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) container: String,
    /// The folder, no leading or trailing `/` (empty: the container root).
    pub(crate) folder: String,
}

/// The policies a container must hold: the generations `(read, write)`, and each policy's
/// `(id, permissions)`.
pub(crate) type PolicyWrite = ((u64, u64), Vec<(String, &'static str)>);

/// The storage side of one running mock.
pub(crate) struct StorageRegistry {
    /// The blob server SAS point at; `None`: URLs that look like Azure's, nothing served.
    pub(crate) blob_server: Option<BlobServer>,
    /// Whether SAS are bound to their container's stored access policy (`si=`).
    pub(crate) revocable: bool,
    /// The container of the workspace's default (internal) File storage.
    pub(crate) default_container: String,
    /// Subscription keys of dataset-scoped service accounts.
    pub(crate) dataset_scoped_keys: Vec<String>,
    state: Mutex<StorageState>,
    /// Held while the blob server's policies are brought up to date, so two requests never
    /// write one container's ACL out of order.
    pub(crate) acl_writes: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct StorageState {
    datasets: BTreeMap<String, Location>,
    storages: BTreeMap<String, String>,
    max_lifetime: Option<Duration>,
    /// `(container, access)` → generation of its policy (ids `dw-read-<n>`, `dw-write-<n>`).
    generations: BTreeMap<(String, SasAccess), u64>,
    /// Containers whose policies the blob server holds, with the generations it holds.
    written: BTreeMap<String, (u64, u64)>,
    issued: Vec<IssuedSas>,
}

impl StorageRegistry {
    pub(crate) fn new(
        blob_server: Option<BlobServer>,
        revocable: bool,
        default_container: String,
        dataset_scoped_keys: Vec<String>,
        max_lifetime: Option<Duration>,
    ) -> Self {
        StorageRegistry {
            blob_server,
            revocable,
            default_container,
            dataset_scoped_keys,
            state: Mutex::new(StorageState {
                max_lifetime,
                ..StorageState::default()
            }),
            acl_writes: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, StorageState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or moves) a dataset; ids compare case-insensitively.
    pub(crate) fn add_dataset(&self, id: &str, location: Location) {
        self.state()
            .datasets
            .insert(id.to_ascii_lowercase(), location);
    }

    pub(crate) fn dataset(&self, id: &str) -> Option<Location> {
        self.state().datasets.get(&id.to_ascii_lowercase()).cloned()
    }

    /// Registers (or moves) a File storage name; names compare case-insensitively.
    pub(crate) fn add_storage(&self, name: &str, container: &str) {
        self.state()
            .storages
            .insert(name.to_ascii_lowercase(), container.to_owned());
    }

    /// The container of a File storage name; `None` (no name) is the default storage.
    pub(crate) fn storage(&self, name: Option<&str>) -> Option<String> {
        match name {
            None => Some(self.default_container.clone()),
            Some(name) => self
                .state()
                .storages
                .get(&name.to_ascii_lowercase())
                .cloned(),
        }
    }

    pub(crate) fn max_lifetime(&self) -> Option<Duration> {
        self.state().max_lifetime
    }

    pub(crate) fn set_max_lifetime(&self, cap: Option<Duration>) {
        self.state().max_lifetime = cap;
    }

    /// The id of the container's current policy for `access`.
    pub(crate) fn policy_id(&self, container: &str, access: SasAccess) -> String {
        let generation = self.generation(&self.state(), container, access);
        policy_name(access, generation)
    }

    fn generation(&self, state: &StorageState, container: &str, access: SasAccess) -> u64 {
        state
            .generations
            .get(&(container.to_owned(), access))
            .copied()
            .unwrap_or(1)
    }

    /// Every container the workspace has: the default storage's, each named storage's and
    /// each dataset's.
    pub(crate) fn containers(&self) -> Vec<String> {
        let state = self.state();
        let mut all: Vec<String> = std::iter::once(self.default_container.clone())
            .chain(state.storages.values().cloned())
            .chain(state.datasets.values().map(|l| l.container.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Replaces the named policy (`None`: every policy of every container) by a new
    /// generation. Returns the containers whose policies changed; empty when no current
    /// policy has that name.
    pub(crate) fn revoke(&self, policy: Option<&str>) -> Vec<String> {
        let containers = self.containers();
        let mut state = self.state();
        let mut changed = Vec::new();
        for container in containers {
            let mut touched = false;
            for access in [SasAccess::Read, SasAccess::Write] {
                let generation = self.generation(&state, &container, access);
                if policy.is_none_or(|p| p == policy_name(access, generation)) {
                    state
                        .generations
                        .insert((container.clone(), access), generation + 1);
                    touched = true;
                }
            }
            if touched {
                changed.push(container);
            }
        }
        changed
    }

    /// The policies the blob server must hold for `container` now, if it does not already:
    /// `(generations, [(id, permissions)])`.
    pub(crate) fn policies_to_write(&self, container: &str) -> Option<PolicyWrite> {
        let state = self.state();
        let read = self.generation(&state, container, SasAccess::Read);
        let write = self.generation(&state, container, SasAccess::Write);
        if state.written.get(container) == Some(&(read, write)) {
            return None;
        }
        Some((
            (read, write),
            vec![
                (
                    policy_name(SasAccess::Read, read),
                    SasAccess::Read.permissions(),
                ),
                (
                    policy_name(SasAccess::Write, write),
                    SasAccess::Write.permissions(),
                ),
            ],
        ))
    }

    /// Notes that the blob server holds these generations of the container's policies.
    pub(crate) fn policies_written(&self, container: &str, generations: (u64, u64)) {
        self.state()
            .written
            .insert(container.to_owned(), generations);
    }

    /// Records a SAS handed out; returns its sequence number.
    pub(crate) fn record(&self, make: impl FnOnce(u64) -> IssuedSas) -> u64 {
        let mut state = self.state();
        let id = state.issued.len() as u64 + 1;
        state.issued.push(make(id));
        id
    }

    pub(crate) fn issued(&self) -> Vec<IssuedSas> {
        self.state().issued.clone()
    }
}

fn policy_name(access: SasAccess, generation: u64) -> String {
    match access {
        SasAccess::Read => format!("dw-read-{generation}"),
        SasAccess::Write => format!("dw-write-{generation}"),
    }
}

/// Seconds since the Unix epoch, with milliseconds, from the wall clock (what storage
/// servers compare `se=` with).
pub(crate) fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
