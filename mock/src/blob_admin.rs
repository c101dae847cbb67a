//! The mock's own calls to a blob server that speaks the storage emulator's path-style URLs
//! (Azurite): create a container, replace its stored access policies, upload a blob; each
//! signed with `SharedKey` and the dev account key, one HTTP/1 connection per call.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ids;
use super::sas::{DEV_ACCOUNT, SAS_VERSION, SharedKeyRequest, encode_path};

/// How long one call to the blob server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A blob server at `http://host:port`, its account at `/devstoreaccount1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlobServer {
    /// `http://host:port`, no trailing slash.
    origin: String,
    /// `host:port`.
    authority: String,
}

impl BlobServer {
    /// Reads `http://host:port` (a trailing `/` or `/devstoreaccount1` is accepted); `None`
    /// for anything else (the mock speaks plain HTTP to a local emulator only).
    pub(crate) fn parse(url: &str) -> Option<BlobServer> {
        let rest = url.trim().strip_prefix("http://")?;
        let rest = rest.trim_end_matches('/');
        let authority = rest
            .strip_suffix(&format!("/{DEV_ACCOUNT}"))
            .unwrap_or(rest);
        let uri: http::uri::Authority = authority.parse().ok()?;
        uri.port_u16()?;
        Some(BlobServer {
            origin: format!("http://{uri}"),
            authority: uri.to_string(),
        })
    }

    /// The account's URL, `http://host:port/devstoreaccount1`.
    pub(crate) fn account_url(&self) -> String {
        format!("{}/{DEV_ACCOUNT}", self.origin)
    }

    /// Creates a container; `Ok(false)` when it already existed.
    pub(crate) async fn create_container(&self, container: &str) -> io::Result<bool> {
        let path = format!("/{DEV_ACCOUNT}/{container}");
        let (status, body) = self
            .call(
                Method::PUT,
                &path,
                &[("restype", "container")],
                &[],
                Bytes::new(),
            )
            .await?;
        match status {
            StatusCode::CREATED => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(failure("create container", status, &body)),
        }
    }

    /// Replaces the container's stored access policies with `policies`: `(id, permissions)`,
    /// each with no start or expiry of its own. An empty list removes them all.
    pub(crate) async fn set_policies(
        &self,
        container: &str,
        policies: &[(String, &str)],
    ) -> io::Result<()> {
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers>"#);
        for (id, permission) in policies {
            xml.push_str(&format!(
                "<SignedIdentifier><Id>{id}</Id><AccessPolicy><Permission>{permission}</Permission></AccessPolicy></SignedIdentifier>"
            ));
        }
        xml.push_str("</SignedIdentifiers>");
        let path = format!("/{DEV_ACCOUNT}/{container}");
        let query = [("restype", "container"), ("comp", "acl")];
        let (status, body) = self
            .call(Method::PUT, &path, &query, &[], Bytes::from(xml))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(failure("set container ACL", status, &body))
        }
    }

    /// Uploads `data` as the block blob `container/path`, replacing any blob there.
    pub(crate) async fn put_blob(
        &self,
        container: &str,
        path: &str,
        data: Bytes,
    ) -> io::Result<()> {
        let path = format!("/{DEV_ACCOUNT}/{container}/{}", encode_path(path));
        let (status, body) = self
            .call(
                Method::PUT,
                &path,
                &[],
                &[("x-ms-blob-type", "BlockBlob")],
                data,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(failure("put blob", status, &body))
        }
    }

    /// One SharedKey-signed request; the status and body of the answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> io::Result<(StatusCode, Bytes)> {
        let date = ids::http_date(ids::unix_now());
        let mut ms_headers: Vec<(&str, &str)> =
            vec![("x-ms-date", &date), ("x-ms-version", SAS_VERSION)];
        ms_headers.extend_from_slice(headers);
        let content_type = if body.is_empty() {
            ""
        } else if query.contains(&("comp", "acl")) {
            "application/xml"
        } else {
            "application/octet-stream"
        };
        let signed = SharedKeyRequest {
            method: method.as_str(),
            content_length: body.len(),
            content_type,
            ms_headers: &ms_headers,
            path,
            query,
        };
        let authorization = signed.authorization();
        let query_string: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let uri = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query_string.join("&"))
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, &self.authority)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::CONTENT_LENGTH, body.len());
        if !content_type.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        for (name, value) in &ms_headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(io::Error::other)?;
        let exchange = async {
            let stream = TcpStream::connect(&self.authority).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(io::Error::other)?;
            let driver = tokio::spawn(connection);
            let response = sender.send_request(request).await.map_err(io::Error::other);
            let result = match response {
                Ok(response) => {
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(io::Error::other)?
                        .to_bytes();
                    Ok((status, body))
                }
                Err(e) => Err(e),
            };
            driver.abort();
            result
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "blob server did not answer"))?
    }
}

fn failure(what: &str, status: StatusCode, body: &[u8]) -> io::Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(500)]);
    io::Error::other(format!("blob server refused to {what}: {status}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_authorities_are_blob_servers() {
        let want = Some("http://127.0.0.1:10000/devstoreaccount1".to_owned());
        for url in [
            "http://127.0.0.1:10000",
            "http://127.0.0.1:10000/",
            "http://127.0.0.1:10000/devstoreaccount1",
        ] {
            assert_eq!(BlobServer::parse(url).map(|s| s.account_url()), want);
        }
        for url in [
            "https://127.0.0.1:10000",
            "127.0.0.1:10000",
            "http://host",
            "http://a:1/x",
        ] {
            assert_eq!(BlobServer::parse(url), None, "{url}");
        }
    }
}
