//! Standard Webhooks signatures (the scheme Svix and others use): `webhook-signature: v1,<base64 HMAC-SHA256 over
//! "{webhook-id}.{webhook-timestamp}.{body}">`, one per configured secret, space separated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Standard Webhooks secrets are "whsec_" + base64 of the key; shorter keys are refused as too weak.
const MIN_WEBHOOK_KEY_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must start with \"whsec_\" (Standard Webhooks format: whsec_ + base64)")]
    Prefix,
    #[error("the part after whsec_ is not valid base64")]
    Base64,
    #[error("the key is {0} bytes; at least {MIN_WEBHOOK_KEY_BYTES} are required")]
    TooShort(usize),
    #[error("no signing secret")]
    None,
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_`.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, KeyError> {
    let encoded = secret.strip_prefix("whsec_").ok_or(KeyError::Prefix)?;
    let key = STANDARD.decode(encoded).map_err(|_| KeyError::Base64)?;
    if key.len() < MIN_WEBHOOK_KEY_BYTES {
        return Err(KeyError::TooShort(key.len()));
    }
    Ok(key)
}

pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl Signer {
    /// Keys from `whsec_...` secrets; the first is current, the rest are kept during a rotation.
    pub fn new(secrets: &[Secret]) -> Result<Signer, KeyError> {
        let keys = secrets
            .iter()
            .map(|s| webhook_key(s.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::None);
        }
        Ok(Signer { keys })
    }

    /// The `webhook-signature` header value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// What a receiver does: true if any `v1` signature in `header` matches `secret` (constant-time compare).
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = webhook_key(secret) else {
        return false;
    };
    let mut expected = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
    expected.update(format!("{id}.{timestamp}.").as_bytes());
    expected.update(body);
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        STANDARD
            .decode(sig)
            .is_ok_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
    })
}
