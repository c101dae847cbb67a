//! What a store over a SAS needs to know of Azure blob storage, whatever object_store major
//! it is built for: where a SAS's resource lives, which SAS signed a request, what a refusal
//! means, and how to sign a request again with another SAS.

use http::{HeaderMap, StatusCode, Uri};
use percent_encoding::percent_decode_str;

use crate::SasError;

/// Where a SAS's resource lives, as object_store's Azure builder wants it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) account: String,
    pub(crate) container: String,
    /// The path in the container, `/`-separated, without leading or trailing `/`.
    pub(crate) prefix: String,
    /// The blob endpoint: `https://<account>.blob.core.windows.net`, or path-style
    /// `http://127.0.0.1:10000/<account>`.
    pub(crate) endpoint: String,
    /// The endpoint is a loopback host (the storage emulator, or a front before it).
    pub(crate) loopback: bool,
}

impl Location {
    pub(crate) fn parse(resource: &str) -> Result<Location, SasError> {
        let invalid = |why: &str| {
            SasError::InvalidResponse(format!(
                "the resource {} {why}",
                crate::redact::url(resource)
            ))
        };
        let uri: Uri = resource.parse().map_err(|_| invalid("is not a URL"))?;
        let scheme = uri.scheme_str().ok_or_else(|| invalid("has no scheme"))?;
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        let host = authority.host();
        let mut segments = uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned());
        let azure = ["dfs.", "blob."]
            .iter()
            .find_map(|service| host.split_once(&format!(".{service}")[..]));
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (account, endpoint) = match azure {
            Some((account, suffix)) if scheme == "https" => (
                account.to_owned(),
                format!("https://{account}.blob.{suffix}"),
            ),
            Some(_) => return Err(invalid("is Azure storage without HTTPS")),
            None => {
                let account = segments.next().ok_or_else(|| invalid("names no account"))?;
                if scheme != "https" && !loopback {
                    return Err(invalid("is plain HTTP to a host that is not loopback"));
                }
                (account.clone(), format!("{scheme}://{authority}/{account}"))
            }
        };
        let container = segments
            .next()
            .ok_or_else(|| invalid("names no container"))?;
        let prefix = segments.collect::<Vec<_>>().join("/");
        Ok(Location {
            account,
            container,
            prefix,
            endpoint,
            loopback,
        })
    }

    /// `<account>-<16 hex digits>`: a host label unique to this account, container and
    /// folder (FNV-1a, stable across builds and Rust versions, unlike std's hasher).
    fn label(&self, folder: &str) -> String {
        let key = format!("{}/{}/{}", self.account, self.container, folder);
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let account: String = self
            .account
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        format!("{account}-{hash:016x}")
    }

    /// `veracity://<label>/`: a URL whose host is unique to this account, container and
    /// folder, since DataFusion keys its object stores by scheme and host alone.
    pub(crate) fn store_url(&self, folder: &str) -> url::Url {
        url::Url::parse(&format!("veracity://{}/", self.label(folder)))
            .expect("an ASCII alphanumeric host is a valid URL")
    }

    /// `abfss://<container>@<label>.dfs.core.windows.net/<path>`: how delta-rs names a table
    /// of the store rooted at `folder`. delta-rs registers a table's store under the URL's
    /// scheme and host alone (not its container), so the host carries the store's
    /// [`label`](Self::label): two datasets in one session, in one account, never share a
    /// store.
    pub(crate) fn abfss_url(&self, folder: &str, path: &str) -> url::Url {
        let mut url = url::Url::parse(&format!(
            "abfss://{}@{}.dfs.core.windows.net/",
            self.container,
            self.label(folder)
        ))
        .unwrap_or_else(|_| url::Url::parse("abfss://invalid@invalid/").expect("a valid URL"));
        let path = path.trim_matches('/');
        if !path.is_empty() {
            url.path_segments_mut()
                .expect("abfss URLs have a path")
                .extend(path.split('/'));
        }
        url
    }
}

/// The `sig=` of a request's query, percent-decoded: which SAS signed it.
pub(crate) fn signature(uri: &Uri) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query()?).ok()?;
    pairs.into_iter().find(|(k, _)| k == "sig").map(|(_, v)| v)
}

/// What storage's refusal of a request says about the SAS it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a refusal of the SAS (a success, a missing blob, a throttle, ...).
    None,
    /// The SAS is no longer accepted: expired, its policy revoked, its signature unknown
    /// (`x-ms-error-code: AuthenticationFailed` or `AuthorizationFailure`). A new SAS may
    /// pass.
    Sas,
    /// The SAS is valid but does not allow this (`AuthorizationPermissionMismatch`, and any
    /// other refusal): a new SAS of the same kind would not either.
    Permission,
}

impl Refusal {
    /// Reads a response's status and `x-ms-error-code` (Azure and Azurite both send it, also
    /// on `HEAD`).
    pub(crate) fn of(status: StatusCode, headers: &HeaderMap) -> Refusal {
        if status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED {
            return Refusal::None;
        }
        match headers.get("x-ms-error-code").map(|v| v.as_bytes()) {
            Some(b"AuthenticationFailed" | b"AuthorizationFailure") => Refusal::Sas,
            _ => Refusal::Permission,
        }
    }
}

/// SAS query parameters (Azure's service, account and user delegation SAS): what signing a
/// request again replaces.
const SAS_PARAMETERS: &[&str] = &[
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "si", "sr", "sdd", "sig", "ses", "skoid",
    "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "rscc", "rscd", "rsce", "rscl",
    "rsct",
];

/// `uri` with its SAS replaced by `pairs`: the request's own parameters stay as they were
/// sent, byte for byte.
pub(crate) fn resign(uri: &Uri, pairs: &[(String, String)]) -> Option<Uri> {
    let query = uri.query().unwrap_or_default();
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            let key = percent_decode_str(key).decode_utf8_lossy();
            !SAS_PARAMETERS.contains(&key.as_ref()) && !pairs.iter().any(|(k, _)| *k == key)
        })
        .collect();
    let signed = serde_urlencoded::to_string(pairs).ok()?;
    kept.push(&signed);
    let path = uri.path();
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{path}?{}", kept.join("&")).parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// object_store's reqwest client takes rustls' process default provider: install `ring`'s
/// when there is none (a second call, or another thread's, changes nothing).
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_uri_names_account_container_and_prefix() {
        assert_eq!(
            Location::parse("https://acct.dfs.core.windows.net/ws-1/datasets/d%201/").unwrap(),
            Location {
                account: "acct".into(),
                container: "ws-1".into(),
                prefix: "datasets/d 1".into(),
                endpoint: "https://acct.blob.core.windows.net".into(),
                loopback: false,
            }
        );
        assert_eq!(
            Location::parse("http://127.0.0.1:10000/devstoreaccount1/files").unwrap(),
            Location {
                account: "devstoreaccount1".into(),
                container: "files".into(),
                prefix: String::new(),
                endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
                loopback: true,
            }
        );
        for bad in [
            "http://acct.blob.core.windows.net/c",
            "http://storage.example/acct/c",
            "https://acct.dfs.core.windows.net/",
            "not a url",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(SasError::InvalidResponse(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn store_urls_are_unique_per_folder_and_abfss_urls_name_the_folder() {
        let at = Location::parse("https://acct.dfs.core.windows.net/ws-1/datasets/d1").unwrap();
        let a = at.store_url("datasets/d1");
        assert_eq!(a.scheme(), "veracity");
        assert_eq!(a.path(), "/");
        assert_ne!(a.host_str(), at.store_url("datasets/d2").host_str());
        assert_eq!(a, at.store_url("datasets/d1"), "stable");
        let table = at.abfss_url("datasets/d1", "datasets/d1/Processed/");
        assert_eq!(table.scheme(), "abfss");
        assert_eq!(table.username(), "ws-1");
        assert_eq!(table.path(), "/datasets/d1/Processed");
        let host = table.host_str().unwrap();
        assert!(
            host.starts_with("acct-") && host.ends_with(".dfs.core.windows.net"),
            "{host}"
        );
        assert_ne!(
            table.host_str(),
            at.abfss_url("datasets/d2", "datasets/d2").host_str(),
            "one host per store: delta-rs keys stores by scheme and host"
        );
        assert_eq!(
            at.abfss_url("", "a b").path(),
            "/a%20b",
            "segments percent-encoded"
        );
    }

    #[test]
    fn refusals_are_told_apart_by_azures_error_code() {
        let with = |code: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-ms-error-code", code.parse().unwrap());
            headers
        };
        let forbidden = StatusCode::FORBIDDEN;
        assert_eq!(
            Refusal::of(forbidden, &with("AuthorizationFailure")),
            Refusal::Sas
        );
        assert_eq!(
            Refusal::of(forbidden, &with("AuthenticationFailed")),
            Refusal::Sas
        );
        assert_eq!(
            Refusal::of(forbidden, &with("AuthorizationPermissionMismatch")),
            Refusal::Permission
        );
        assert_eq!(
            Refusal::of(forbidden, &HeaderMap::new()),
            Refusal::Permission
        );
        assert_eq!(
            Refusal::of(StatusCode::NOT_FOUND, &with("BlobNotFound")),
            Refusal::None
        );
    }

    #[test]
    fn resigning_replaces_the_sas_and_keeps_the_requests_own_parameters() {
        let uri: Uri = "http://127.0.0.1:1/acct/c?restype=container&comp=list&prefix=a/b%20c/&sv=1&se=2026&sig=old%2B&si=p1"
            .parse()
            .unwrap();
        assert_eq!(signature(&uri).as_deref(), Some("old+"));
        let pairs = vec![
            ("sv".to_owned(), "1".to_owned()),
            ("si".to_owned(), "p2".to_owned()),
            ("sig".to_owned(), "new+/=".to_owned()),
        ];
        let resigned = resign(&uri, &pairs).unwrap();
        assert_eq!(
            resigned.to_string(),
            "http://127.0.0.1:1/acct/c?restype=container&comp=list&prefix=a/b%20c/&sv=1&si=p2&sig=new%2B%2F%3D"
        );
        assert_eq!(signature(&resigned).as_deref(), Some("new+/="));
    }
}
