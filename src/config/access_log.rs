//! `access_log` (SPEC §2): the format of the one line written per request.

use serde::Deserialize;

/// The `access_log` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    #[serde(default)]
    pub format: AccessLogFormat,
}

/// `text` (the default): one human-readable line. `json`: one JSON object per line, with field
/// names log shippers map without parsing rules (docs/metrics-and-logs.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Text,
    Json,
}
