//! Reading a pushed JSON object field by field, so one field of an unexpected type costs that field, not the
//! message: channel managers add, drop and retype fields without notice, and a push is never worth losing for a
//! field we do not need.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::channel::booking::wire::Id;

/// A JSON object's members, each still as its text.
pub struct Fields<'a>(HashMap<String, &'a RawValue>);

impl<'a> Fields<'a> {
    /// `text` as an object; the error names the problem without quoting the body.
    pub fn of(text: &'a str) -> Result<Fields<'a>, String> {
        serde_json::from_str(text).map(Fields).map_err(|e| {
            format!(
                "the body is not a JSON object: {}",
                crate::channel::booking::wire::without_values(&e.to_string())
            )
        })
    }

    pub fn object(&self, name: &str) -> Option<Fields<'a>> {
        self.present(name)
            .and_then(|raw| serde_json::from_str(raw.get()).ok().map(Fields))
    }

    /// The member, unless absent or `null`.
    pub fn present(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied().filter(|raw| raw.get() != "null")
    }

    /// An id, written as a string or a number (kept as the number's exact text); `None` when absent, null,
    /// empty or of another type.
    pub fn id(&self, name: &str) -> Option<String> {
        let raw = self.present(name)?;
        serde_json::from_str::<Id>(raw.get())
            .ok()
            .map(|id| id.0)
            .filter(|id| !id.trim().is_empty())
    }

    /// A string member; `None` when absent, null or not a string.
    pub fn text(&self, name: &str) -> Option<String> {
        self.present(name)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    /// An id that a message cannot be stored without.
    pub fn required_id(&self, name: &str, path: &str) -> Result<String, String> {
        match self.present(name) {
            None => Err(format!("missing field `{path}`")),
            Some(_) => self
                .id(name)
                .ok_or_else(|| format!("{path}: must be a non-empty string or a number")),
        }
    }

    /// The elements of an array member that are ids (strings or numbers); anything else stays in `raw`.
    pub fn ids(&self, name: &str) -> Vec<String> {
        let Some(raw) = self.present(name) else {
            return Vec::new();
        };
        serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| serde_json::from_str::<Id>(item.get()).ok().map(|id| id.0))
            .collect()
    }

    /// The members of an array member that are objects.
    pub fn objects(&self, name: &str) -> Vec<Fields<'a>> {
        let Some(raw) = self.present(name) else {
            return Vec::new();
        };
        serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| serde_json::from_str(item.get()).ok().map(Fields))
            .collect()
    }
}

/// An id in an already parsed value: a non-empty string, or a number's text.
pub fn id_of_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
