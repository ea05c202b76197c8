//! Field types with their checks: each value is validated as it is deserialized, so an error names its key
//! (serde_path_to_error) and line. Every `de_*` has a matching `ser_*` that writes the value as it would be
//! written in the file (what `check-config` shows).

use std::time::Duration;

use reqwest::Url;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};

pub const MINUTE: u64 = 60;
pub const DAY: u64 = 86_400;
/// A century: the longest finite retention (longer is a typo, or "forever").
pub const RETENTION_MAX_DAYS: u64 = 36_500;

/// A duration above zero and at most `MAX_SECS`: beyond any sensible setting, where a typo ("30y" for "30s")
/// would otherwise overflow the timer arithmetic.
pub fn de_duration<'de, D: Deserializer<'de>, const MAX_SECS: u64>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let duration = humantime::parse_duration(&text)
        .map_err(|e| de::Error::custom(format!("{text:?} is not a duration (like \"30s\" or \"5m\"): {e}")))?;
    let max = Duration::from_secs(MAX_SECS);
    if duration.is_zero() {
        return Err(de::Error::custom("must be longer than zero"));
    }
    if duration > max {
        return Err(de::Error::custom(format!("must be at most {}", duration_text(max))));
    }
    Ok(duration)
}

pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(*d))
}

/// A retention period: a duration above zero of at most a century, or "forever" (`None`).
pub fn de_retention<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "forever" {
        return Ok(None);
    }
    match humantime::parse_duration(&text) {
        Ok(d) if d > Duration::from_secs(RETENTION_MAX_DAYS * DAY) => Err(de::Error::custom(format!(
            "must be at most {RETENTION_MAX_DAYS}days; to keep data indefinitely, write \"forever\""
        ))),
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(de::Error::custom("must be above zero, or \"forever\"")),
        Err(e) => Err(de::Error::custom(format!(
            "{text:?} is not a duration (like \"30d\") or \"forever\": {e}"
        ))),
    }
}

pub fn ser_retention<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.map_or_else(|| "forever".to_owned(), duration_text))
}

/// A duration as it would be written: whole days as days ("400days"), where humantime's own format gives
/// "1year 1month 4days 7h 26m 24s" (its year and month are averages); anything else as humantime prints it.
pub fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / DAY, secs % DAY, d.subsec_nanos()) {
        (1, 0, 0) => "1day".to_owned(),
        (days, 0, 0) if days > 1 => format!("{days}days"),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// An API base URL: http or https, no credentials, query or fragment.
pub fn de_api_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let url = de_webhook_url(d)?;
    if url.query().is_some() {
        return Err(de::Error::custom("must not have a query"));
    }
    Ok(url)
}

/// A webhook URL may carry a query (some receivers route or authenticate by it); it is never logged.
pub fn de_webhook_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let value = String::deserialize(d)?;
    let url = Url::parse(&value).map_err(|e| {
        // Echo what was written, but not a query or userinfo: either may hold a token.
        let shown = if value.contains('@') {
            "the value".to_owned()
        } else {
            match value.split_once('?') {
                Some((before, _)) => format!("{before:?} (query not shown)"),
                None => format!("{value:?}"),
            }
        };
        de::Error::custom(format!("{shown} is not a URL: {e}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(de::Error::custom(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.fragment().is_some() {
        return Err(de::Error::custom("must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(de::Error::custom("must not embed credentials; use the credential keys"));
    }
    Ok(url)
}

pub fn ser_url<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

/// The URL without its query (which may carry a receiver's token), as `check-config` shows a webhook URL.
pub fn ser_redacted_url<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    let shown = crate::http_client::redacted(url);
    match url.query() {
        Some(_) => s.serialize_str(&super::render::annotated(&shown, "its query is not shown")),
        None => s.serialize_str(&shown),
    }
}

/// Plain http leaves credentials and guest data readable on the way, except to this machine.
pub fn plain_http_warning(key: &str, url: &Url) -> Option<String> {
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    (url.scheme() == "http" && !loopback).then(|| {
        format!(
            "{key} uses plain http to {}: credentials and guest data travel unencrypted",
            url.host_str().unwrap_or("?")
        )
    })
}

pub fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<std::net::SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "{text:?} is not an IP address and port (like \"127.0.0.1:9477\")"
        ))
    })
}

pub fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "{text:?} is not an IANA time zone name (like \"UTC\" or \"Europe/Amsterdam\")"
        ))
    })
}

pub fn ser_timezone<S: Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// An `EnvFilter` directive string ("info", "info,ota_relay::channel=debug").
pub fn de_log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let level = String::deserialize(d)?;
    match tracing_subscriber::EnvFilter::builder().parse(&level) {
        Ok(_) => Ok(level),
        Err(e) => Err(de::Error::custom(format!("{level:?} is not a valid filter: {e}"))),
    }
}

/// A number within `MIN..=MAX`.
pub fn de_count<'de, D: Deserializer<'de>, const MIN: i64, const MAX: i64>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if (MIN..=MAX).contains(&n) {
        Ok(n as usize)
    } else {
        Err(de::Error::custom(format!("{n} is not between {MIN} and {MAX}")))
    }
}

/// A string with something in it.
pub fn de_non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(text)
}

pub fn de_non_empty_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_non_empty(d).map(Some)
}
