//! A SAS request on the wire: the Data Workbench call for a dataset or a File storage, and
//! what its answer means (the resource, the SAS's query pairs, its expiry `se=`).
//!
//! From Veracity's documents (`dataplatform/storage/*`, the gateway's API reference):
//!
//! - a dataset: `GET /api/v2/workspaces/{ws}/datasets/{id}/sas?durationInMinutes=N&type=dfs`,
//!   answered with the SAS URI as a JSON string: read-only, for the dataset's folder;
//! - File storage: `POST /api/v2/workspaces/{ws}/storages/sas?format=object` with
//!   `{path?, readOrWritePermission, expiresOn, storageName?}`, answered with
//!   `{"resourceUri", "sasToken"}` (without `format=object`: the URI as a JSON string).
//!
//! Both paths are relative to the gateway base, `https://api.veracity.com/veracity/dw/gateway`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use http::{HeaderValue, Method, Request, Response, Uri, header};

use crate::{
    ConfigError, SasError,
    http_client::TokenRequestBody,
    redact,
    source::{USER_AGENT, response::retry_after},
};

/// Data Workbench's gateway, under which the SAS paths lie.
pub(crate) const DEFAULT_GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway";

/// Longest error text kept from the gateway's answer.
const MAX_MESSAGE: usize = 300;

/// What a SAS may do on a File storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SasAccess {
    /// List and read (`readOrWritePermission: "Read"`).
    Read,
    /// Read, and also create and write (`readOrWritePermission: "Write"`).
    Write,
}

/// What a SAS is for.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A dataset's folder, read-only.
    Dataset { workspace: String, dataset: String },
    /// A workspace's File storage, or a path in it.
    Storage {
        workspace: String,
        storage_name: Option<String>,
        path: Option<String>,
        access: SasAccess,
    },
}

/// A SAS as Data Workbench handed it out.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The resource URI, without a query: `https://<account>.dfs.core.windows.net/<container>/<path>`.
    pub(crate) resource: String,
    /// The SAS's query pairs, percent-decoded (`sv`, `se`, `sp`, `sig`, ...).
    pub(crate) query: Vec<(String, String)>,
    /// `se=`, the SAS's expiry, if it names one that can be read.
    pub(crate) expires_at: Option<SystemTime>,
}

impl Target {
    /// What a log line may say of the target (ids, not secrets).
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Dataset { workspace, dataset } => {
                format!("dataset {dataset} of workspace {workspace}")
            }
            Target::Storage {
                workspace,
                storage_name,
                path,
                access,
            } => format!(
                "{access:?} SAS for storage {} of workspace {workspace}{}",
                storage_name.as_deref().unwrap_or("(default)"),
                path.as_deref()
                    .map(|p| format!(", path {p}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// The URI asking for a SAS that lives `lifetime`, under `gateway`, and the lifetime
    /// actually asked for (a dataset's SAS is asked for in whole minutes, rounded up).
    pub(crate) fn uri(
        &self,
        gateway: &str,
        lifetime: Duration,
    ) -> Result<(Uri, Duration), ConfigError> {
        let base = gateway.trim_end_matches('/');
        let (uri, asked) = match self {
            Target::Dataset { workspace, dataset } => {
                let minutes = lifetime.as_secs().div_ceil(60).max(1);
                let uri = format!(
                    "{base}/api/v2/workspaces/{}/datasets/{}/sas?durationInMinutes={minutes}&type=dfs",
                    segment(workspace),
                    segment(dataset),
                );
                (uri, Duration::from_secs(minutes * 60))
            }
            Target::Storage { workspace, .. } => {
                let uri = format!(
                    "{base}/api/v2/workspaces/{}/storages/sas?format=object",
                    segment(workspace)
                );
                (uri, lifetime)
            }
        };
        let uri = uri.parse().map_err(|_| {
            ConfigError::Sas(format!(
                "the SAS request URL is not valid: {}",
                redact::url(&uri)
            ))
        })?;
        Ok((uri, asked))
    }

    /// The request to `uri` (from [`uri`](Self::uri)) for a SAS that lives `lifetime` from
    /// `now`.
    pub(crate) fn request(
        &self,
        uri: &Uri,
        lifetime: Duration,
        now: SystemTime,
    ) -> Request<TokenRequestBody> {
        let (method, body) = match self {
            Target::Dataset { .. } => (Method::GET, Bytes::new()),
            Target::Storage {
                storage_name,
                path,
                access,
                ..
            } => {
                let expires = now.checked_add(lifetime).unwrap_or(now);
                let permission = match access {
                    SasAccess::Read => "Read",
                    SasAccess::Write => "Write",
                };
                let mut body = serde_json::json!({
                    "readOrWritePermission": permission,
                    "expiresOn": iso_8601(expires),
                });
                if let Some(path) = path {
                    body["path"] = path.as_str().into();
                }
                if let Some(name) = storage_name {
                    body["storageName"] = name.as_str().into();
                }
                (Method::POST, Bytes::from(body.to_string().into_bytes()))
            }
        };
        let mut request = Request::new(TokenRequestBody::new(body, None));
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if method == Method::POST {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        *request.method_mut() = method;
        request
    }
}

/// Reads Data Workbench's answer: a SAS, or the refusal it says.
pub(crate) fn parse(response: &Response<Bytes>) -> Result<Answer, SasError> {
    let status = response.status();
    let body = response.body();
    if !status.is_success() {
        return Err(SasError::Refused {
            status,
            message: refusal_message(body),
            retry_after: retry_after(response.headers()),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        SasError::InvalidResponse(format!(
            "HTTP {status} with a body that is not JSON ({} bytes)",
            body.len()
        ))
    })?;
    let (resource, token) = match &value {
        serde_json::Value::String(uri) => split_uri(uri)?,
        serde_json::Value::Object(fields) => {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            };
            match (field("resourceUri"), field("sasToken"), field("sasUri")) {
                (Some(resource), Some(token), _) => {
                    let (resource, _) = resource.split_once('?').unwrap_or((resource, ""));
                    (
                        resource.to_owned(),
                        token.trim_start_matches('?').to_owned(),
                    )
                }
                (_, _, Some(uri)) => split_uri(uri)?,
                _ => {
                    return Err(SasError::InvalidResponse(
                        "a JSON object without `resourceUri` and `sasToken`".into(),
                    ));
                }
            }
        }
        _ => {
            return Err(SasError::InvalidResponse(
                "JSON that is neither a SAS URI nor an object".into(),
            ));
        }
    };
    if !(resource.starts_with("https://") || resource.starts_with("http://")) {
        return Err(SasError::InvalidResponse(format!(
            "the resource `{}` is not an http(s) URL",
            redact::url(&resource)
        )));
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(&token)
        .map_err(|_| SasError::InvalidResponse("a SAS token that is not a query string".into()))?;
    if !query.iter().any(|(k, v)| k == "sig" && !v.is_empty()) {
        return Err(SasError::InvalidResponse(
            "a SAS without a signature (`sig=`)".into(),
        ));
    }
    let expires_at = query
        .iter()
        .find(|(k, _)| k == "se")
        .and_then(|(_, v)| parse_iso_8601(v));
    Ok(Answer {
        resource,
        query,
        expires_at,
    })
}

/// `https://host/path?query` as the resource and the query.
fn split_uri(uri: &str) -> Result<(String, String), SasError> {
    match uri.split_once('?') {
        Some((resource, token)) if !token.is_empty() => Ok((resource.to_owned(), token.to_owned())),
        _ => Err(SasError::InvalidResponse(format!(
            "the SAS URI {} has no query",
            redact::url(uri)
        ))),
    }
}

/// The gateway's error text (`{"message": ...}`, or the body), made safe to show.
fn refusal_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["message", "Message", "error_description", "title"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_owned))
        })
        .unwrap_or_else(|| text.into_owned());
    redact::free_text(&message, MAX_MESSAGE)
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment, percent-encoded but for RFC 3986's unreserved characters.
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// `2026-11-29T12:00:00Z`, in UTC, to the second.
pub(crate) fn iso_8601(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Reads `se=` in the ISO 8601 forms Azure Storage documents for it: `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mmTZD` and RFC 3339's `YYYY-MM-DDThh:mm:ss[.f]TZD`, with `Z` or a
/// `+hh:mm`/`-hh:mm` offset. `None` for anything else, or a time before 1970.
pub(crate) fn parse_iso_8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let at = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%#z"))
        .map(|at| at.to_utc())
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|day| day.and_time(NaiveTime::MIN).and_utc())
        })
        .ok()?;
    (at.timestamp() >= 0).then(|| at.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::time::UNIX_EPOCH;

    fn answer(status: StatusCode, body: &str) -> Result<Answer, SasError> {
        let mut response = Response::new(Bytes::from(body.to_owned()));
        *response.status_mut() = status;
        parse(&response)
    }

    #[test]
    fn iso_8601_round_trips_and_reads_azure_forms() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_953_600);
        assert_eq!(iso_8601(at), "2026-11-29T12:00:00Z");
        assert_eq!(parse_iso_8601("2026-11-29T12:00:00Z"), Some(at));
        assert_eq!(parse_iso_8601("2026-11-29T12:00:00.0000000Z"), Some(at));
        assert_eq!(parse_iso_8601("2026-11-29T13:00:00+01:00"), Some(at));
        assert_eq!(parse_iso_8601("2026-11-29T12:00Z"), Some(at));
        assert_eq!(
            parse_iso_8601("2026-11-29"),
            Some(at - Duration::from_secs(12 * 3600))
        );
        for bad in [
            "",
            "tomorrow",
            "2026-13-01",
            "2026-11-29T25:00:00Z",
            "1960-01-01",
        ] {
            assert_eq!(parse_iso_8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_dataset_sas_is_a_json_string_and_its_pairs_are_decoded() {
        let sas = answer(
            StatusCode::OK,
            r#""https://acct.dfs.core.windows.net/ws/datasets/d1?sv=2022-11-02&se=2026-11-29T12%3A00%3A00Z&sr=c&sp=rl&sig=abc%2Bdef%3D""#,
        )
        .unwrap();
        assert_eq!(
            sas.resource,
            "https://acct.dfs.core.windows.net/ws/datasets/d1"
        );
        assert!(sas.query.contains(&("sig".into(), "abc+def=".into())));
        assert_eq!(
            sas.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_953_600))
        );
    }

    #[test]
    fn a_storage_sas_is_an_object_of_resource_and_token() {
        let sas = answer(
            StatusCode::OK,
            r#"{"resourceUri":"https://acct.blob.core.windows.net/c","sasToken":"?sv=1&sig=s"}"#,
        )
        .unwrap();
        assert_eq!(sas.resource, "https://acct.blob.core.windows.net/c");
        assert_eq!(sas.expires_at, None);
        assert_eq!(sas.query.len(), 2);
    }

    #[test]
    fn refusals_and_nonsense_are_typed_errors_without_the_signature() {
        let err = answer(
            StatusCode::BAD_REQUEST,
            r#"{"message":"expiresOn must not be in the past; sig=leaked-signature-value"}"#,
        )
        .unwrap_err();
        let SasError::Refused {
            status, message, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*status, StatusCode::BAD_REQUEST);
        assert!(message.contains("expiresOn must not be in the past"));
        assert!(!err.to_string().contains("leaked-signature-value"));
        for body in [
            "not json",
            "42",
            r#"{"other":1}"#,
            r#""https://acct/c""#,
            r#""ftp://acct/c?sig=x""#,
            r#""https://acct/c?sv=1""#,
        ] {
            let err = answer(StatusCode::OK, body).unwrap_err();
            assert!(
                matches!(err, SasError::InvalidResponse(_)),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn requests_name_the_target_and_the_lifetime() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_953_600);
        let dataset = Target::Dataset {
            workspace: "w s".into(),
            dataset: "d/1".into(),
        };
        let (uri, asked) = dataset
            .uri(DEFAULT_GATEWAY, Duration::from_secs(61))
            .unwrap();
        let request = dataset.request(&uri, asked, now);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(
            request.uri(),
            "https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/w%20s/datasets/d%2F1/sas?durationInMinutes=2&type=dfs"
        );
        assert_eq!(asked, Duration::from_secs(120));
        let storage = Target::Storage {
            workspace: "w".into(),
            storage_name: Some("files".into()),
            path: Some("out/".into()),
            access: SasAccess::Write,
        };
        let (uri, asked) = storage
            .uri("http://127.0.0.1:1/gw/", Duration::from_secs(5))
            .unwrap();
        let request = storage.request(&uri, asked, now);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri(),
            "http://127.0.0.1:1/gw/api/v2/workspaces/w/storages/sas?format=object"
        );
        assert_eq!(asked, Duration::from_secs(5));
    }
}
