//! `ota-relay inbox-link`: a one-time link into the inbox, made by an operator (the PMS makes them with `POST
//! /api/v1/auth/one_time_token`).

use crate::config::Settings;
use crate::ops::tools::ToolError;
use crate::store::sessions::{self, Grant};
use crate::store::{self, now_ms, threads};

/// The absolute link, from `[api] public_url` (else the listen address).
pub fn link(
    settings: &Settings,
    token_name: &str,
    user: &str,
    property: Option<&str>,
    thread: Option<&str>,
) -> Result<String, ToolError> {
    let api = settings
        .api
        .as_ref()
        .ok_or_else(|| ToolError::Usage("the inbox is served on the API listener: configure [api] first".into()))?;
    let token = api.tokens.iter().find(|t| t.name == token_name).ok_or_else(|| {
        let names: Vec<&str> = api.tokens.iter().map(|t| t.name.as_str()).collect();
        ToolError::Usage(format!(
            "no [[api.tokens]] entry named {token_name:?} (configured: {})",
            names.join(", ")
        ))
    })?;
    if user.trim().is_empty() || user.chars().count() > 80 {
        return Err(ToolError::Usage("--user must be a name of 1 to 80 characters".into()));
    }
    if let Some(p) = property
        && !token.sees(Some(p))
    {
        return Err(ToolError::Usage(format!(
            "token {token_name:?} has no access to property {p}"
        )));
    }
    if property.is_none() && token.property_ids.is_some() {
        return Err(ToolError::Usage(format!(
            "token {token_name:?} is limited to some properties: give --property"
        )));
    }
    let mut conn = store::open_for_tools(&settings.store.path)?;
    if let Some(id) = thread {
        let found = threads::get(&conn, id)?.ok_or_else(|| ToolError::Usage(format!("no conversation {id}")))?;
        let scope_ok = token.sees(found.property_id.as_deref())
            && property.is_none_or(|p| found.property_id.as_deref() == Some(p));
        if !scope_ok {
            return Err(ToolError::Usage(format!("no conversation {id}")));
        }
    }
    let key = crate::web::random_key();
    let grant = Grant {
        token_name: token_name.to_owned(),
        user: user.trim().to_owned(),
        property_id: property.map(str::to_owned),
        thread_id: thread.map(str::to_owned),
    };
    let tx = conn.transaction()?;
    sessions::create_one_time(&tx, &key, &grant, now_ms())?;
    tx.commit()?;
    let mut link = format!("{}/inbox/auth/exchange?oauth_session_key={key}", api.base_url());
    if let Some(id) = thread {
        link.push_str(&format!("&redirect_to=/inbox/threads/{id}"));
    }
    Ok(link)
}
