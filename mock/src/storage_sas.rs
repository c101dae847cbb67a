//! The SAS endpoints of the gateway: a dataset's read-only SAS (v2 `durationInMinutes`, v1
//! `expiresOn`), a File storage SAS (`POST …/storages/sas`) and revocation by stored access
//! policy (`DELETE /api/v1/…/storages/sas/revoke`), answered with real service SAS signed for
//! the emulator's dev account.
//!
//! Called by the gateway after its key and token checks, for the workspace it knows.

use std::io;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::body::MockBody;
use super::ids;
use super::paths::KEY_HEADER;
use super::reply::{empty_response, json_response};
use super::sas::{DEV_ACCOUNT, ServiceSas, encode_path};
use super::state::MockState;
use super::stats::{IssuedSas, SasAccess, SasKind, bump};
use super::storage::{Location, wall_clock_millis};

/// The longest lifetime the mock signs (Azure has no documented maximum for a service SAS
/// under an account key; this only keeps the arithmetic far from overflow).
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Which gateway version a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    V1,
    V2,
}

/// `GET /api/v2/workspaces/{ws}/datasets/{id}/sas?durationInMinutes=N&type=dfs`, or
/// `GET /api/v1/workspaces/{ws}/datasets/{id}/sas?expiresOn=…`: the dataset folder's SAS URI,
/// read-only, as a JSON string.
pub(crate) async fn dataset(
    shared: &MockState,
    version: ApiVersion,
    dataset_id: &str,
    parts: &Parts,
) -> Response<MockBody> {
    bump(&shared.counters.dataset_sas_requests);
    let query = query_pairs(parts);
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let now_ms = wall_clock_millis();
    let asked_expiry_ms = match version {
        ApiVersion::V2 => {
            let Some(minutes) = param("durationInMinutes") else {
                return refused(shared, bad_request("durationInMinutes is required."));
            };
            match minutes.trim().parse::<u64>() {
                Ok(m) if m >= 1 && Duration::from_secs(m.saturating_mul(60)) <= LONGEST => {
                    now_ms + m * 60_000
                }
                _ => {
                    return refused(
                        shared,
                        bad_request(
                            "durationInMinutes must be a whole number of minutes, at least 1.",
                        ),
                    );
                }
            }
        }
        ApiVersion::V1 => match expiry_in_future(param("expiresOn"), "expiresOn", now_ms) {
            Ok(ms) => ms,
            Err(resp) => return refused(shared, resp),
        },
    };
    let host = match param("type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("dfs") => "dfs",
        Some("blob") => "blob",
        Some(_) => return refused(shared, bad_request("type must be 'dfs' or 'blob'.")),
    };
    let Some(location) = shared.storage.dataset(dataset_id) else {
        return refused(
            shared,
            not_found(&format!("Dataset {dataset_id} was not found.")),
        );
    };
    let grant = Grant {
        kind: SasKind::Dataset,
        access: SasAccess::Read,
        location,
        start: None,
        expiry_ms: asked_expiry_ms,
        host,
    };
    match issue(shared, grant).await {
        Ok((uri, token)) => json_response(StatusCode::OK, &json!(format!("{uri}?{token}"))),
        Err(resp) => refused(shared, resp),
    }
}

/// `POST /api/v2/workspaces/{ws}/storages/sas[?format=object]` with `{path?,
/// readOrWritePermission, startsOn?, expiresOn, storageName?}`: the SAS URI as a JSON string,
/// or `{"resourceUri", "sasToken"}` with `format=object`.
pub(crate) async fn storage(shared: &MockState, parts: &Parts, body: &[u8]) -> Response<MockBody> {
    bump(&shared.counters.storage_sas_requests);
    if is_dataset_scoped(shared, parts) {
        return refused(
            shared,
            forbidden(
                "This service account is scoped to datasets: it has no access to the workspace's File storage.",
            ),
        );
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return refused(
            shared,
            bad_request("The request body must be a JSON object."),
        );
    };
    let text = |name: &str| -> Result<Option<&str>, Refusal> {
        match field(&fields, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad_request(&format!("{name} must be a string."))),
        }
    };
    let parsed = (|| {
        let access = match text("readOrWritePermission")?
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("read") => SasAccess::Read,
            Some("write") => SasAccess::Write,
            Some(_) => {
                return Err(bad_request(
                    "readOrWritePermission must be 'Read' or 'Write'.",
                ));
            }
            None => return Err(bad_request("readOrWritePermission is required.")),
        };
        let now_ms = wall_clock_millis();
        let expiry_ms = expiry_in_future(text("expiresOn")?, "expiresOn", now_ms)?;
        let start = match text("startsOn")? {
            None => None,
            Some(s) => match ids::parse_iso_timestamp(s) {
                Some(secs) if secs.saturating_mul(1000) < expiry_ms => Some(secs),
                Some(_) => return Err(bad_request("expiresOn must be later than startsOn.")),
                None => return Err(bad_request("startsOn is not a valid date and time.")),
            },
        };
        let path = text("path")?.unwrap_or("").trim_matches('/').to_owned();
        let storage_name = text("storageName")?.filter(|n| !n.trim().is_empty());
        let Some(container) = shared.storage.storage(storage_name) else {
            return Err(not_found(&format!(
                "Storage {} was not found.",
                storage_name.unwrap_or_default()
            )));
        };
        Ok(Grant {
            kind: SasKind::Storage,
            access,
            location: Location {
                container,
                folder: path,
            },
            start,
            expiry_ms,
            host: "dfs",
        })
    })();
    let grant = match parsed {
        Ok(grant) => grant,
        Err(resp) => return refused(shared, resp),
    };
    let object = query_pairs(parts)
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("format") && v.eq_ignore_ascii_case("object"));
    match issue(shared, grant).await {
        Ok((uri, token)) if object => json_response(
            StatusCode::OK,
            &json!({ "resourceUri": uri, "sasToken": token }),
        ),
        Ok((uri, token)) => json_response(StatusCode::OK, &json!(format!("{uri}?{token}"))),
        Err(resp) => refused(shared, resp),
    }
}

/// `DELETE /api/v1/workspaces/{ws}/storages/sas/revoke[?policyToRevoke=name]` (workspace
/// admins): replaces the named policy, or every policy of the workspace's containers, so each
/// SAS bound to it is refused by the storage server. Answers `204`.
pub(crate) async fn revoke(shared: &MockState, parts: &Parts) -> Response<MockBody> {
    if is_dataset_scoped(shared, parts) {
        return refused(
            shared,
            forbidden("Only workspace admins can revoke SAS policies."),
        );
    }
    let query = query_pairs(parts);
    let policy = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("policyToRevoke"))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let changed = shared.storage.revoke(policy);
    if changed.is_empty() {
        return refused(
            shared,
            not_found(&format!(
                "Policy {} was not found.",
                policy.unwrap_or_default()
            )),
        );
    }
    if shared.storage.revocable {
        for container in &changed {
            if let Err(e) = write_policies(shared, container).await {
                return refused(shared, storage_failure(&e));
            }
        }
    }
    bump(&shared.counters.sas_revocations);
    tracing::debug!(
        policy,
        containers = changed.len(),
        "veracity mock: SAS policies revoked"
    );
    empty_response(StatusCode::NO_CONTENT)
}

/// What one SAS is for.
struct Grant {
    kind: SasKind,
    access: SasAccess,
    location: Location,
    /// `st=`, Unix seconds.
    start: Option<u64>,
    /// The expiry asked for, Unix milliseconds (cut to the maximum lifetime here).
    expiry_ms: u64,
    /// `dfs` or `blob`: the Azure host name the URI gets when no blob server is configured.
    host: &'static str,
}

/// Signs a SAS for the grant: `(resource URI, SAS token)`, or the response refusing it.
async fn issue(shared: &MockState, grant: Grant) -> Result<(String, String), Refusal> {
    let registry = &shared.storage;
    let container = grant.location.container.as_str();
    let policy = if registry.revocable {
        write_policies(shared, container)
            .await
            .map_err(|e| storage_failure(&e))?;
        Some(registry.policy_id(container, grant.access))
    } else {
        None
    };
    let now_ms = wall_clock_millis();
    let cap_ms = registry.max_lifetime().map_or(u64::MAX, |cap| {
        u64::try_from(cap.as_millis()).unwrap_or(u64::MAX)
    });
    // `se=` has whole seconds: round down, so the SAS never outlives what was asked.
    let expiry = grant.expiry_ms.min(now_ms.saturating_add(cap_ms)) / 1000;
    let sas = ServiceSas {
        container,
        permissions: policy.is_none().then(|| grant.access.permissions()),
        start: grant.start,
        expiry,
        identifier: policy.as_deref(),
    };
    let token = sas.token();
    let base = match &registry.blob_server {
        Some(server) => server.account_url(),
        None => format!("https://{DEV_ACCOUNT}.{}.core.windows.net", grant.host),
    };
    let uri = if grant.location.folder.is_empty() {
        format!("{base}/{container}")
    } else {
        format!("{base}/{container}/{}", encode_path(&grant.location.folder))
    };
    let id = registry.record(|id| IssuedSas {
        id,
        kind: grant.kind,
        container: container.to_owned(),
        path: grant.location.folder.clone(),
        access: grant.access,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(expiry),
        policy: policy.clone(),
    });
    bump(&shared.counters.sas_issued);
    tracing::debug!(id, kind = ?grant.kind, container, "veracity mock: SAS issued");
    Ok((uri, token))
}

/// Brings the blob server's stored access policies for `container` up to date (creating the
/// container if needed); nothing to do without a blob server.
async fn write_policies(shared: &MockState, container: &str) -> io::Result<()> {
    let Some(server) = &shared.storage.blob_server else {
        return Ok(());
    };
    let _in_order = shared.storage.acl_writes.lock().await;
    let Some((generations, policies)) = shared.storage.policies_to_write(container) else {
        return Ok(());
    };
    server.create_container(container).await?;
    server.set_policies(container, &policies).await?;
    shared.storage.policies_written(container, generations);
    Ok(())
}

fn is_dataset_scoped(shared: &MockState, parts: &Parts) -> bool {
    parts.headers.get(KEY_HEADER).is_some_and(|key| {
        shared
            .storage
            .dataset_scoped_keys
            .iter()
            .any(|k| k.as_bytes() == key.as_bytes())
    })
}

/// An `expiresOn` that is present, readable and in the future, in Unix milliseconds.
fn expiry_in_future(value: Option<&str>, name: &str, now_ms: u64) -> Result<u64, Refusal> {
    let Some(value) = value else {
        return Err(bad_request(&format!("{name} is required.")));
    };
    let Some(secs) = ids::parse_iso_timestamp(value) else {
        return Err(bad_request(&format!(
            "{name} is not a valid date and time."
        )));
    };
    let ms = secs.saturating_mul(1000);
    if ms <= now_ms {
        return Err(bad_request(&format!("{name} cannot be a past date.")));
    }
    if Duration::from_millis(ms - now_ms) > LONGEST {
        return Err(bad_request(&format!("{name} is too far in the future.")));
    }
    Ok(ms)
}

/// A JSON field by name, compared case-insensitively (as ASP.NET binds them).
fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).unwrap_or_default()
}

fn refused(shared: &MockState, refusal: Refusal) -> Response<MockBody> {
    bump(&shared.counters.sas_refused);
    json_response(
        refusal.status,
        &json!({ "type": refusal.kind, "message": refusal.message, "traceId": ids::uuid() }),
    )
}

/// Why the SAS endpoints refuse a request: status, Data Workbench's error type and a message
/// naming the cause.
struct Refusal {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

fn bad_request(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        kind: "BusinessError",
        message: message.to_owned(),
    }
}

fn forbidden(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        kind: "Forbidden",
        message: message.to_owned(),
    }
}

fn not_found(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        kind: "NotFound",
        message: message.to_owned(),
    }
}

fn storage_failure(error: &io::Error) -> Refusal {
    Refusal {
        status: StatusCode::BAD_GATEWAY,
        kind: "StorageError",
        message: format!("The storage server failed: {error}"),
    }
}
