//! Token-response parsing: any status and any bytes, never a panic; a token that parses is
//! always one the layer can send (or a typed error when it is not).
#![no_main]

use http::{HeaderMap, StatusCode, header::RETRY_AFTER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8], &[u8])| {
    let (status, retry_after, body) = input;
    let status = StatusCode::from_u16(100 + status % 500).unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(retry_after) {
        headers.insert(RETRY_AFTER, value);
    }
    if let Err(error) = veracity_auth::parse_token_response(status, &headers, body) {
        let _ = error.to_string();
        let _ = error.is_permanent();
        let _ = error.retry_after();
    }
});
