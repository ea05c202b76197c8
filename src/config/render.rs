//! `check-config`'s effective settings: the typed settings serialized (every default filled in, every secret
//! masked) and written out as TOML, with a comment where a value needs one (a secret's source, a hidden query).
//! Rendering walks whatever the settings serialize, so a new key shows up without being listed anywhere.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::Settings;

/// Marks a string serialized as `value` + `MARK` + `note`, written as `"value"  # note`.
const MARK: char = '\u{1}';

/// Optional sections, and what their absence means.
const ABSENT: &[(&str, &str)] = &[
    ("booking", "no Booking.com pull or notifications."),
    ("staah", "no STAAH pushes."),
    ("channex", "no Channex webhook."),
    ("receive", "no push listener."),
    ("forward", "messages are stored and wait in the outbox."),
    ("http", "no health or metrics listener."),
];

/// A value that `check-config` writes with a comment after it.
pub(crate) fn annotated(value: &str, note: &str) -> String {
    format!("{value}{MARK}{note}")
}

impl Settings {
    /// The effective settings as TOML, every default filled in and every secret masked.
    pub fn render_masked(&self) -> String {
        let table = Table::try_from(self).expect("settings serialize to a TOML table");
        let mut out = format!("# effective settings of {}\n", self.source.display());
        write_table(&mut out, "", &table);
        for (section, meaning) in ABSENT {
            if !table.contains_key(*section) {
                let _ = writeln!(out, "\n# [{section}] is not configured: {meaning}");
            }
        }
        out
    }
}

fn write_table(out: &mut String, prefix: &str, table: &Table) {
    let is_section = |v: &Value| v.is_table() || is_array_of_tables(v);
    if !prefix.is_empty() {
        let _ = writeln!(out, "\n[{prefix}]");
    }
    for (key, value) in table.iter().filter(|(_, v)| !is_section(v)) {
        let _ = writeln!(out, "{key} = {}", written(value));
    }
    for (key, value) in table.iter().filter(|(_, v)| is_section(v)) {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => write_table(out, &path, inner),
            Value::Array(items) => {
                for item in items.iter().filter_map(Value::as_table) {
                    let _ = writeln!(out, "\n[[{path}]]");
                    for (key, value) in item {
                        let _ = writeln!(out, "{key} = {}", written(value));
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_array_of_tables(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| !items.is_empty() && items.iter().all(Value::is_table))
}

/// A value as TOML, with its note as a comment (a list takes its first element's note).
fn written(value: &Value) -> String {
    let split = |s: &str| {
        s.split_once(MARK)
            .map(|(v, note)| (v.to_owned(), Some(note.to_owned())))
            .unwrap_or_else(|| (s.to_owned(), None))
    };
    let (text, note) = match value {
        Value::String(s) => {
            let (v, note) = split(s);
            (Value::String(v).to_string(), note)
        }
        Value::Array(items) => {
            let mut note = None;
            let items: Vec<Value> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => {
                        let (v, n) = split(s);
                        note = note.take().or(n);
                        Value::String(v)
                    }
                    other => other.clone(),
                })
                .collect();
            (Value::Array(items).to_string(), note)
        }
        other => (other.to_string(), None),
    };
    match note {
        Some(note) => format!("{text}  # {note}"),
        None => text,
    }
}
