//! Azure Storage signatures with the storage emulator's well-known dev account: blob service
//! SAS (the string-to-sign of service version 2020-12-06 and later) and `SharedKey`
//! authorization for the mock's own calls to a blob server.
//!
//! Sources: Microsoft's "Create a service SAS" and "Authorize with Shared Key" pages; checked
//! against Azurite 3.35's `generateBlobSASSignature20201206` and `BlobSharedKeyAuthenticator`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// The Azure Storage emulator's account name.
pub(crate) const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's published, well-known account key (not a secret: every emulator has it).
pub(crate) const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The service version the mock signs with (`sv=`, `x-ms-version`).
pub(crate) const SAS_VERSION: &str = "2022-11-02";

/// One blob service SAS for a whole container (`sr=c`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServiceSas<'a> {
    pub(crate) container: &'a str,
    /// `sp=`; `None` when the stored access policy holds the permissions.
    pub(crate) permissions: Option<&'a str>,
    /// `st=`, Unix seconds.
    pub(crate) start: Option<u64>,
    /// `se=`, Unix seconds.
    pub(crate) expiry: u64,
    /// `si=`: the container's stored access policy the SAS is bound to.
    pub(crate) identifier: Option<&'a str>,
}

impl ServiceSas<'_> {
    /// The string-to-sign of a blob service SAS, version 2020-12-06 and later: sixteen fields
    /// joined by `\n`, values not URL-encoded.
    pub(crate) fn string_to_sign(&self) -> String {
        let start = self
            .start
            .map(super::ids::iso_timestamp)
            .unwrap_or_default();
        [
            self.permissions.unwrap_or(""),
            &start,
            &super::ids::iso_timestamp(self.expiry),
            &format!("/blob/{DEV_ACCOUNT}/{}", self.container),
            self.identifier.unwrap_or(""),
            "", // signedIP
            "", // signedProtocol
            SAS_VERSION,
            "c", // signedResource
            "",  // signedSnapshotTime
            "",  // signedEncryptionScope
            "",  // rscc
            "",  // rscd
            "",  // rsce
            "",  // rscl
            "",  // rsct
        ]
        .join("\n")
    }

    /// The SAS token (query string, no leading `?`), signed with the dev account key.
    pub(crate) fn token(&self) -> String {
        let sig = sign(&self.string_to_sign());
        let mut out = format!("sv={SAS_VERSION}");
        if let Some(start) = self.start {
            out.push_str("&st=");
            out.push_str(&encode_component(&super::ids::iso_timestamp(start)));
        }
        out.push_str("&se=");
        out.push_str(&encode_component(&super::ids::iso_timestamp(self.expiry)));
        out.push_str("&sr=c");
        if let Some(sp) = self.permissions {
            out.push_str("&sp=");
            out.push_str(sp);
        }
        if let Some(si) = self.identifier {
            out.push_str("&si=");
            out.push_str(&encode_component(si));
        }
        out.push_str("&sig=");
        out.push_str(&encode_component(&sig));
        out
    }
}

/// HMAC-SHA256 of `text` under the dev account key, in base64.
pub(crate) fn sign(text: &str) -> String {
    let key_bytes = STANDARD.decode(DEV_KEY).unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    STANDARD.encode(hmac::sign(&key, text.as_bytes()).as_ref())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a blob path, keeping its `/` separators.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// One request the mock sends to a blob server, as `SharedKey` signs it.
pub(crate) struct SharedKeyRequest<'a> {
    pub(crate) method: &'a str,
    /// The `Content-Length` sent (0 is signed as empty, as from version 2015-02-21).
    pub(crate) content_length: usize,
    pub(crate) content_type: &'a str,
    /// Every `x-ms-*` header sent, names lowercase.
    pub(crate) ms_headers: &'a [(&'a str, &'a str)],
    /// The URL path as sent, path-style: `/devstoreaccount1/<container>[/<blob>]`, encoded.
    pub(crate) path: &'a str,
    /// The query parameters, decoded.
    pub(crate) query: &'a [(&'a str, &'a str)],
}

impl SharedKeyRequest<'_> {
    /// The string-to-sign of Shared Key authorization for the blob service.
    pub(crate) fn string_to_sign(&self) -> String {
        let length = if self.content_length == 0 {
            String::new()
        } else {
            self.content_length.to_string()
        };
        let mut out = [
            self.method,
            "", // Content-Encoding
            "", // Content-Language
            &length,
            "", // Content-MD5
            self.content_type,
            "", // Date (x-ms-date is sent instead)
            "", // If-Modified-Since
            "", // If-Match
            "", // If-None-Match
            "", // If-Unmodified-Since
            "", // Range
        ]
        .join("\n");
        out.push('\n');
        let mut headers: Vec<&(&str, &str)> = self.ms_headers.iter().collect();
        headers.sort_by_key(|(name, _)| *name);
        for (name, value) in headers {
            out.push_str(&format!("{name}:{}\n", value.trim()));
        }
        // Path-style (emulator) URLs carry the account twice: `/account` + `/account/...`.
        out.push_str(&format!("/{DEV_ACCOUNT}{}", self.path));
        let mut query: Vec<&(&str, &str)> = self.query.iter().collect();
        query.sort_by_key(|(name, _)| *name);
        for (name, value) in query {
            out.push_str(&format!("\n{}:{value}", name.to_ascii_lowercase()));
        }
        out
    }

    /// The `Authorization` header value: `SharedKey devstoreaccount1:<signature>`.
    pub(crate) fn authorization(&self) -> String {
        format!("SharedKey {DEV_ACCOUNT}:{}", sign(&self.string_to_sign()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_key_is_valid_base64_of_64_bytes() {
        assert_eq!(STANDARD.decode(DEV_KEY).map(|k| k.len()).ok(), Some(64));
    }

    #[test]
    fn a_container_sas_has_every_field_in_order() {
        let sas = ServiceSas {
            container: "c1",
            permissions: Some("rl"),
            start: None,
            expiry: 1_734_220_799,
            identifier: None,
        };
        assert_eq!(
            sas.string_to_sign(),
            "rl\n\n2024-12-14T23:59:59Z\n/blob/devstoreaccount1/c1\n\n\n\n2022-11-02\nc\n\n\n\n\n\n\n"
        );
        let token = sas.token();
        assert!(
            token.starts_with("sv=2022-11-02&se=2024-12-14T23%3A59%3A59Z&sr=c&sp=rl&sig="),
            "{token}"
        );
    }

    /// Reference signatures computed by Azurite 3.35's own verifier
    /// (`generateBlobSASSignature` in `dist/src/blob/authentication/IBlobSASSignatureValues.js`)
    /// for the same fields and the dev account key.
    #[test]
    fn signatures_match_what_azurite_computes() {
        let plain = ServiceSas {
            container: "c1",
            permissions: Some("rl"),
            start: None,
            expiry: 1_734_220_799,
            identifier: None,
        };
        assert_eq!(
            sign(&plain.string_to_sign()),
            "XNjxBruFYbmT/b4hgKIHjp/F9m9f2tlsq1XDva4Fsbs="
        );
        let bound = ServiceSas {
            container: "c1",
            permissions: None,
            start: Some(1_734_213_600),
            expiry: 1_734_220_799,
            identifier: Some("dw-read-1"),
        };
        assert_eq!(
            sign(&bound.string_to_sign()),
            "lSSocHuAXv3Wg38oQjXr91gu+0nJrGBlSAACQ1tc1bM="
        );
        assert!(
            bound
                .token()
                .contains("&si=dw-read-1&sig=lSSocHuAXv3Wg38oQjXr91gu%2B0nJrGBlSAACQ1tc1bM%3D")
        );
    }
}
