//! Random-looking identifiers (tokens, trace and correlation ids) and
//! Azure-style timestamps (error bodies, SAS `se=`, storage `x-ms-date`), written and read
//! with `chrono`, the client's date crate too.
//!
//! Randomness comes from `std`'s `RandomState` (randomly keyed SipHash) mixed
//! with a process-wide counter and the wall clock; it is unpredictable enough
//! for a test server and needs no extra dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// 64 random-looking bits, different on every call.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.finish()
}

/// A random version-4-looking UUID, e.g. `0f4c2a8e-51b7-4d3a-9c1e-2b7d8e6f1a90`.
pub(crate) fn uuid() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Seconds since the Unix epoch, from the wall clock.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as a date-time in UTC.
fn utc(secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or_default()
}

/// The current time the way Azure AD writes it in error bodies:
/// `2022-02-18 08:18:12Z`.
pub(crate) fn azure_timestamp() -> String {
    utc(unix_now()).format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Unix seconds as a SAS and Data Workbench write them: `2024-12-14T23:59:59Z`.
pub(crate) fn iso_timestamp(secs: u64) -> String {
    utc(secs).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix seconds as HTTP dates write them (`x-ms-date`): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(secs: u64) -> String {
    utc(secs).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Reads an ISO 8601 date-time as .NET and Python clients send it (`2024-12-14T23:59:59Z`,
/// `…59.000Z`, `…59.2970000Z`, `…59+01:00`: RFC 3339; or no zone at all, Python's naive
/// `isoformat()`: UTC) to Unix seconds, fractions dropped. `None` for anything else, or a
/// time before 1970.
pub(crate) fn parse_iso_timestamp(text: &str) -> Option<u64> {
    let text = text.trim();
    let at = DateTime::parse_from_rfc3339(text)
        .map(|at| at.to_utc())
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|at| at.and_utc())
        })
        .ok()?;
    u64::try_from(at.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps_round_trip_and_read_what_clients_send() {
        assert_eq!(iso_timestamp(1_645_172_292), "2022-02-18T08:18:12Z");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        for secs in [0, 951_782_400, 1_645_172_292, 4_102_444_800] {
            assert_eq!(parse_iso_timestamp(&iso_timestamp(secs)), Some(secs));
        }
        let want = Some(1_734_220_799);
        for text in [
            "2024-12-14T23:59:59Z",
            "2024-12-14T23:59:59.000Z",
            "2024-12-14T23:59:59.2970000Z",
            "2024-12-14T23:59:59.297123",
            "2024-12-15T00:59:59+01:00",
            "2024-12-14T22:59:59-01:00",
        ] {
            assert_eq!(parse_iso_timestamp(text), want, "{text}");
        }
        for bad in [
            "",
            "2024-12-14",
            "2024-13-14T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "2024-12-14T24:00:00Z",
            "2024-12-14T23:59:59.Z",
            "2024-12-14T23:59:59+0100",
            "1969-12-31T23:59:59Z",
            "tomorrow",
        ] {
            assert_eq!(parse_iso_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn uuids_differ_and_look_right() {
        let a = uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, uuid());
    }
}
