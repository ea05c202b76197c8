//! `[http]`: the health and metrics listener.

use serde::{Deserialize, Serialize};

use super::value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Required in the section (an address like "127.0.0.1:9477").
    #[serde(deserialize_with = "value::de_listen")]
    pub listen: std::net::SocketAddr,
}
