//! Log lines out of `syslog` points: the fields written at one time with
//! the same tags are one entry. Seed 002 writes `message`, `level` and
//! `program` fields; Telegraf's syslog input writes `message` with the
//! tags `severity` and `appname`. Both read the same here.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Chunk, Values};

/// The measurement logs are written to.
pub const MEASUREMENT: &str = "syslog";

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogEntry {
    /// Unix nanoseconds.
    #[serde(skip)]
    pub nanos: i64,
    /// RFC 3339, nanoseconds.
    pub time: String,
    pub level: Option<String>,
    pub program: Option<String>,
    pub message: String,
    /// The line's other fields and tags, as text.
    pub fields: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// Which lines a reader wants.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Any of these levels, case-insensitive (`None`: all).
    pub levels: Option<Vec<String>>,
    /// Text the message contains, case-insensitive.
    pub text: Option<String>,
}

impl LogFilter {
    fn admits(&self, entry: &LogEntry) -> bool {
        let level_ok = match (&self.levels, &entry.level) {
            (None, _) => true,
            (Some(levels), Some(level)) => levels.iter().any(|l| l.eq_ignore_ascii_case(level)),
            (Some(_), None) => false,
        };
        let text_ok = self.text.as_ref().is_none_or(|text| entry.message.to_lowercase().contains(&text.to_lowercase()));
        level_ok && text_ok
    }
}

/// A log line's fields by name, gathered per (tags, time).
type Lines<'a> = BTreeMap<(&'a [(String, String)], i64), BTreeMap<&'a str, String>>;

/// The entries of `chunk`'s `syslog` series that `filter` admits.
pub fn entries(chunk: &Chunk, filter: &LogFilter) -> Vec<LogEntry> {
    let mut by_line = Lines::new();
    for series in chunk.series.iter().filter(|s| s.key.measurement == MEASUREMENT) {
        for (i, &time) in series.times.iter().enumerate() {
            let text = match &series.values {
                Values::String(v) => v[i].clone(),
                other => other.text(i),
            };
            by_line.entry((series.key.tags.as_slice(), time)).or_default().insert(series.key.field.as_str(), text);
        }
    }
    by_line
        .into_iter()
        .map(|((tags, nanos), mut fields)| {
            let tags: BTreeMap<String, String> = tags.iter().cloned().collect();
            let message = fields.remove("message").unwrap_or_default();
            let level = fields.remove("level").or_else(|| tags.get("severity").cloned());
            let program = fields.remove("program").or_else(|| tags.get("appname").cloned());
            let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            LogEntry { nanos, time: rfc3339(nanos), level, program, message, fields, tags }
        })
        .filter(|entry| filter.admits(entry))
        .collect()
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::line::{Limits, Precision, parse};

    #[test]
    fn seed_and_telegraf_lines_read_alike_and_filters_apply() {
        let body = "syslog message=\"disk full\",level=\"err\",program=\"df\" 1\n\
                    syslog,appname=sshd,severity=info message=\"Accepted key\",procid=\"42\" 2\n\
                    syslog message=\"all good\",level=\"info\" 3\n\
                    cpu usage=1 4\n";
        let chunk = parse(body, Precision::Seconds, 0, Limits::default(), None).unwrap().chunk;
        let all = entries(&chunk, &LogFilter::default());
        assert_eq!(all.len(), 3);
        let ssh = all.iter().find(|e| e.program.as_deref() == Some("sshd")).unwrap();
        assert_eq!((ssh.level.as_deref(), ssh.message.as_str()), (Some("info"), "Accepted key"));
        assert_eq!(ssh.fields.get("procid").map(String::as_str), Some("42"));
        assert_eq!(ssh.time, "1970-01-01T00:00:02Z");

        let info = LogFilter { levels: Some(vec!["INFO".into()]), text: None };
        assert_eq!(entries(&chunk, &info).len(), 2);
        let text = LogFilter { levels: None, text: Some("DISK".into()) };
        assert_eq!(entries(&chunk, &text)[0].program.as_deref(), Some("df"));
    }
}
