//! What the commands print: the formats of tokens, headers, environment variables and SAS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use serde_json::json;

use crate::cache::Issued;

/// The variable holding the access token, for `env` and `exec`.
pub const TOKEN_VAR: &str = "VERACITY_ACCESS_TOKEN";
/// The API key's header, as Veracity's documents spell it.
const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// The variable holding the API key: the one the library's `from_env` reads.
pub const KEY_VAR: &str = veracity_auth::env::API_KEY;

/// A time as RFC 3339 in UTC, to the second (`2026-12-08T01:02:03Z`): one format, no local
/// time, no daylight-saving ambiguity.
pub fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `token --format json`, in the shape `az account get-access-token` users know, with one
/// unambiguous expiry in each form.
pub fn token_json(issued: &Issued, profile: &str) -> String {
    json!({
        "accessToken": issued.access_token,
        "tokenType": "Bearer",
        "expiresOn": rfc3339(issued.expires_at()),
        "expires_on": issued.expires_on,
        "profile": profile,
    })
    .to_string()
}

/// The two header lines, for `curl -H @-`.
pub fn header_lines(issued: &Issued, key: &str) -> String {
    format!(
        "Authorization: Bearer {}\n{KEY_HEADER}: {key}\n",
        issued.access_token,
    )
}

/// `header --format json`: the credential-helper answer Bazel and uv read.
pub fn header_json(issued: &Issued, key: &str) -> String {
    json!({
        "headers": {
            "Authorization": [format!("Bearer {}", issued.access_token)],
            KEY_HEADER: [key],
        },
        "expires": rfc3339(issued.expires_at()),
    })
    .to_string()
}

/// A shell that `env` writes for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh: `export NAME='value'`.
    Sh,
    /// fish: `set -gx NAME 'value'`.
    Fish,
    /// PowerShell: `$env:NAME = 'value'`.
    Powershell,
    /// A `.env` file: `NAME="value"`.
    Dotenv,
}

/// `vars` as assignments for `shell`, one a line, each value quoted so that nothing in it
/// is run.
pub fn assignments(shell: Shell, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(name, value)| match shell {
            Shell::Sh => format!("export {name}='{}'\n", value.replace('\'', r"'\''")),
            Shell::Fish => format!(
                "set -gx {name} '{}'\n",
                value.replace('\\', r"\\").replace('\'', r"\'")
            ),
            Shell::Powershell => format!("$env:{name} = '{}'\n", value.replace('\'', "''")),
            Shell::Dotenv => format!(
                "{name}=\"{}\"\n",
                value
                    .replace('\\', r"\\")
                    .replace('"', "\\\"")
                    .replace('\n', r"\n")
            ),
        })
        .collect()
}

/// A duration as `--min-valid` takes it: `300`, `90s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (examples: 300, 90s, 5m, 1h30m)");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            's' | 'm' | 'h' | 'd' if !number.is_empty() => {
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => 86400,
                };
                let n: u64 = number.parse().map_err(|_| bad())?;
                total = n
                    .checked_mul(unit)
                    .and_then(|s| total.checked_add(s))
                    .ok_or_else(bad)?;
                number.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Seconds since the Unix epoch, now.
pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "m", "5x", "5m3", "-1", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_quoted_for_each_shell() {
        let vars = [("V", "a'b")];
        assert_eq!(assignments(Shell::Sh, &vars), "export V='a'\\''b'\n");
        assert_eq!(assignments(Shell::Fish, &vars), "set -gx V 'a\\'b'\n");
        assert_eq!(assignments(Shell::Powershell, &vars), "$env:V = 'a''b'\n");
        assert_eq!(
            assignments(Shell::Dotenv, &[("V", "a\"b")]),
            "V=\"a\\\"b\"\n"
        );
    }

    #[test]
    fn expiries_are_utc_rfc3339() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
    }
}
