//! Our OAuth 2.0 authorization server for Booking.com's notification service (CNS), which is its client
//! (RFC 6749 §4.4, the client credentials grant): `POST /oauth/token` with `grant_type=client_credentials`, the
//! client authenticated by HTTP Basic or by form fields (§2.3.1), answers a bearer token that CNS presents with
//! each notification.
//!
//! Tokens are HS256 JWTs signed with a key derived from the client secret: they stay valid across restarts (CNS
//! caches them until they expire), rotating the secret invalidates them, and nothing is kept in the store.
//! Checked: the signature, the audience and the expiry, without leeway.

use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::NotificationSettings;

const ISSUER: &str = "ota-relay";
const AUDIENCE: &str = "ota-relay:booking-notifications";
/// What the signing key is derived for: another use of the same secret cannot produce a valid token.
const KEY_PURPOSE: &[u8] = b"ota-relay booking.notifications bearer token, version 1";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
}

/// Issues and checks the bearer tokens of one client (`[booking.notifications]`).
pub struct TokenIssuer {
    client_id: String,
    client_secret: String,
    ttl: Duration,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token request that cannot be answered with a token, as RFC 6749 §5.2 names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_client")]
    InvalidClient,
}

impl TokenError {
    /// The `error` field of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidClient => "invalid_client",
        }
    }
}

/// The client credentials a token request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Deserialize)]
struct Form {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Reads a token request: its `Authorization` header and form body. Exactly one way of authenticating the
/// client (§2.3: a client must not use more than one).
pub fn parse_request(authorization: Option<&[u8]>, body: &[u8]) -> Result<ClientCredentials, TokenError> {
    let form: Form =
        serde_urlencoded::from_bytes(body).map_err(|_| TokenError::InvalidRequest("the body is not a form"))?;
    match form.grant_type.as_deref() {
        None => return Err(TokenError::InvalidRequest("no grant_type")),
        Some("client_credentials") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }
    let basic = authorization.map(basic_credentials).transpose()?;
    match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(TokenError::InvalidRequest(
            "the client authenticated in the header and in the body",
        )),
        (Some(credentials), None, None) => Ok(credentials),
        (None, Some(client_id), Some(client_secret)) => Ok(ClientCredentials {
            client_id,
            client_secret,
        }),
        (None, _, _) => Err(TokenError::InvalidClient),
    }
}

/// `Basic base64(urlencoded(id) ":" urlencoded(secret))` (§2.3.1).
fn basic_credentials(header: &[u8]) -> Result<ClientCredentials, TokenError> {
    let text = std::str::from_utf8(header).map_err(|_| TokenError::InvalidClient)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(TokenError::InvalidClient)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::InvalidClient);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| TokenError::InvalidClient)?;
    let decoded = String::from_utf8(decoded).map_err(|_| TokenError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(TokenError::InvalidClient)?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
            .ok_or(TokenError::InvalidClient)
    };
    Ok(ClientCredentials {
        client_id: unescape(id)?,
        client_secret: unescape(secret)?,
    })
}

impl TokenIssuer {
    pub fn new(settings: &NotificationSettings) -> TokenIssuer {
        let secret = settings.client_secret.expose();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
        mac.update(KEY_PURPOSE);
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // Checked in `verifies`: jsonwebtoken accepts a token in its expiry second, RFC 7519 §4.1.4 does not.
        validation.validate_exp = false;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        TokenIssuer {
            client_id: settings.client_id.clone(),
            client_secret: secret.to_owned(),
            ttl: settings.token_ttl,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// Whether `presented` are this client's credentials (constant time in their values).
    pub fn authenticates(&self, presented: &ClientCredentials) -> bool {
        let id = crate::web::same_secret(&presented.client_id, &self.client_id);
        let secret = crate::web::same_secret(&presented.client_secret, &self.client_secret);
        id & secret
    }

    /// A token valid for the configured lifetime from `now_secs`, and that lifetime in seconds.
    pub fn issue(&self, now_secs: u64) -> (String, u64) {
        let ttl = self.ttl.as_secs().max(1);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: self.client_id.clone(),
            iat: now_secs,
            exp: now_secs + ttl,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a derived key cannot fail");
        (token, ttl)
    }

    /// Whether `token` was issued by us for this client and is still valid at `now_secs` (the current time must
    /// be before `exp`).
    pub fn verifies(&self, token: &str, now_secs: u64) -> bool {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => now_secs < data.claims.exp && crate::web::same_secret(&data.claims.sub, &self.client_id),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn issuer(secret: &str) -> TokenIssuer {
        let mut settings = NotificationSettings::new("cns", Secret::inline(secret));
        settings.token_ttl = Duration::from_secs(60);
        TokenIssuer::new(&settings)
    }

    #[test]
    fn a_token_is_valid_until_its_expiry_second_and_only_under_its_own_secret() {
        let issuer = issuer("first secret");
        let (token, ttl) = issuer.issue(1_000);
        assert_eq!(ttl, 60);
        assert!(issuer.verifies(&token, 1_000));
        assert!(issuer.verifies(&token, 1_059));
        assert!(!issuer.verifies(&token, 1_060), "refused from the second of its expiry");
        assert!(!self::issuer("rotated secret").verifies(&token, 1_000));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert!(!issuer.verifies(&tampered, 1_000));
    }

    #[test]
    fn a_token_request_authenticates_one_way_only() {
        use base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", STANDARD.encode("cns:s%3Acret"));
        let by_header = parse_request(Some(basic.as_bytes()), b"grant_type=client_credentials").unwrap();
        assert_eq!(
            (by_header.client_id.as_str(), by_header.client_secret.as_str()),
            ("cns", "s:cret")
        );
        let by_form = parse_request(None, b"grant_type=client_credentials&client_id=cns&client_secret=x").unwrap();
        assert_eq!(by_form.client_secret, "x");
        let both = parse_request(Some(basic.as_bytes()), b"grant_type=client_credentials&client_id=cns");
        assert!(matches!(both, Err(TokenError::InvalidRequest(_))));
        assert_eq!(
            parse_request(None, b"grant_type=password").unwrap_err(),
            TokenError::UnsupportedGrantType
        );
        assert!(matches!(
            parse_request(None, b"client_id=cns"),
            Err(TokenError::InvalidRequest(_))
        ));
        assert_eq!(
            parse_request(None, b"grant_type=client_credentials").unwrap_err(),
            TokenError::InvalidClient
        );
        assert_eq!(
            parse_request(Some(b"Basic !!!"), b"grant_type=client_credentials").unwrap_err(),
            TokenError::InvalidClient
        );
    }
}
