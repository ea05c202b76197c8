//! Channex's query parameters: `pagination[page]` (from 1), `pagination[limit]` (default 10, at most 100),
//! `order[field]=asc|desc`, `filter[name]=value`. A value that is not understood is a 422 naming it, never
//! silently ignored.

use super::ApiError;

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

/// The query's pairs, as sent.
pub struct Params(pub Vec<(String, String)>);

pub struct Page {
    pub page: usize,
    pub limit: usize,
}

impl Page {
    pub fn offset(&self) -> usize {
        (self.page - 1) * self.limit
    }
}

pub struct Order {
    pub field: &'static str,
    pub descending: bool,
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn page(&self) -> Result<Page, ApiError> {
        let number = |name: &str, default: usize, max: usize| -> Result<usize, ApiError> {
            match self.get(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(ApiError::validation(
                        name,
                        &format!("must be a whole number from 1 to {max}"),
                    )),
                },
            }
        };
        Ok(Page {
            page: number("pagination[page]", 1, 1_000_000)?,
            limit: number("pagination[limit]", DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }

    /// `order[field]`: one of `allowed` (the first is the default, in `default_descending`).
    pub fn order(&self, allowed: &[&'static str], default_descending: bool) -> Result<Order, ApiError> {
        let mut chosen = None;
        for (key, value) in &self.0 {
            let Some(field) = key.strip_prefix("order[").and_then(|k| k.strip_suffix(']')) else {
                continue;
            };
            let Some(&known) = allowed.iter().find(|a| **a == field) else {
                return Err(ApiError::validation(
                    key,
                    &format!("cannot order by {field}; one of: {}", allowed.join(", ")),
                ));
            };
            let descending = match value.to_ascii_lowercase().as_str() {
                "desc" => true,
                "asc" => false,
                _ => return Err(ApiError::validation(key, "must be asc or desc")),
            };
            chosen = Some(Order {
                field: known,
                descending,
            });
        }
        Ok(chosen.unwrap_or(Order {
            field: allowed[0],
            descending: default_descending,
        }))
    }

    pub fn filter(&self, name: &str) -> Option<&str> {
        self.get(&format!("filter[{name}]")).filter(|v| !v.is_empty())
    }

    pub fn bool_filter(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.filter(name) {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(_) => Err(ApiError::validation(
                &format!("filter[{name}]"),
                "must be true or false",
            )),
        }
    }
}
