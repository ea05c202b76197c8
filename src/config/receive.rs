//! `[receive]`: the one HTTP listener that takes every push (Booking.com notifications, STAAH, Channex).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::{ConfigError, Cx};

const MAX_BODY_LIMIT: i64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveSettings {
    /// An address and port, or "systemd" (the socket systemd passes: it stays open while the daemon restarts).
    #[serde(with = "listen")]
    pub listen: Listen,
    /// Larger request bodies are refused (413) while they are read, never buffered whole.
    #[serde(
        default = "default_max_body",
        deserialize_with = "super::value::de_count::<_, 1024, MAX_BODY_LIMIT>"
    )]
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` names the real caller (a reverse proxy), for logs and rate limits.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// TLS (both or neither; re-read on SIGHUP). Without them the receiver speaks plain HTTP, behind a proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Addr(SocketAddr),
    /// Socket activation: the listening socket comes from systemd (`ota-relay.socket`).
    Systemd,
}

impl ReceiveSettings {
    pub fn on(addr: SocketAddr) -> ReceiveSettings {
        ReceiveSettings {
            listen: Listen::Addr(addr),
            max_body_bytes: default_max_body(),
            trusted_proxies: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }

    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err(cx.invalid("receive.tls_key_file", "is required with receive.tls_cert_file")),
            (None, Some(_)) => return Err(cx.invalid("receive.tls_cert_file", "is required with receive.tls_key_file")),
            _ => {}
        }
        self.tls_cert_file = self.tls_cert_file.take().map(|p| cx.beside_config(p));
        self.tls_key_file = self.tls_key_file.take().map(|p| cx.beside_config(p));
        if self.tls_cert_file.is_none()
            && let Listen::Addr(addr) = self.listen
            && !addr.ip().is_loopback()
        {
            cx.warnings.push(format!(
                "receive.listen {addr} speaks plain HTTP: put a TLS proxy in front, or set receive.tls_cert_file"
            ));
        }
        Ok(())
    }
}

mod listen {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "systemd" {
            return Ok(Listen::Systemd);
        }
        text.parse().map(Listen::Addr).map_err(|_| {
            de::Error::custom(format!(
                "{text:?} is not an IP address and port (like \"0.0.0.0:8443\") or \"systemd\""
            ))
        })
    }

    pub fn serialize<S: Serializer>(listen: &Listen, s: S) -> Result<S::Ok, S::Error> {
        match listen {
            Listen::Addr(addr) => s.serialize_str(&addr.to_string()),
            Listen::Systemd => s.serialize_str("systemd"),
        }
    }
}

fn default_max_body() -> usize {
    1024 * 1024
}
