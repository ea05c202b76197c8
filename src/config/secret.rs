//! Secrets: one rule for every one of them. Each comes from exactly one source: its key (`password`), its file
//! (`password_file`, a trailing newline trimmed), or, when neither is set, its environment variable. The value
//! is never printed: not by `Debug`, not in an error (a wrongly typed value is not echoed), not by `check-config`.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{ConfigError, Cx};

const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret and where it came from (the source is printable, the value never is).
#[derive(Clone)]
pub struct Secret {
    value: SecretString,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Key(String),
    File(PathBuf),
    Env(&'static str),
    /// Operator commands do not read secrets (only the service may be able to).
    NotRead,
}

impl Secret {
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    #[doc(hidden)] // the built-in demo and tests configure secrets directly
    pub fn inline(value: &str) -> Secret {
        Secret {
            value: SecretString::from(value.to_owned()),
            source: SecretSource::Key("(built in)".into()),
        }
    }

    fn unresolved() -> Secret {
        Secret {
            value: SecretString::from(String::new()),
            source: SecretSource::NotRead,
        }
    }
}

impl Default for Secret {
    fn default() -> Secret {
        Secret::unresolved()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(******** {})", self.source)
    }
}

/// Equal values (and sources): a reload compares settings, secrets included, without printing them.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose() && self.source == other.source
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::render::annotated("********", &self.source.to_string()))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Key(key) => write!(f, "from {key}"),
            SecretSource::File(path) => write!(f, "from file {}", path.display()),
            SecretSource::Env(var) => write!(f, "from environment variable {var}"),
            SecretSource::NotRead => write!(f, "(not read by operator commands)"),
        }
    }
}

/// A secret as written in the file: a string, or (where rotation allows) a list of strings.
#[derive(Clone, PartialEq)]
pub(super) enum Written {
    One(String),
    Many(Vec<String>),
}

impl fmt::Debug for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Written(********)")
    }
}

impl<'de> Deserialize<'de> for Written {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Written, D::Error> {
        struct WrittenVisitor;
        impl<'de> Visitor<'de> for WrittenVisitor {
            type Value = Written;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Written, E> {
                Ok(Written::One(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Written, A::Error> {
                let mut all = Vec::new();
                while let Some(one) = seq.next_element::<Written>()? {
                    match one {
                        Written::One(v) => all.push(v),
                        Written::Many(_) => return Err(de::Error::custom("a list of secrets holds strings")),
                    }
                }
                Ok(Written::Many(all))
            }
        }
        // Any other type is refused without echoing it: serde's own message would quote the value.
        d.deserialize_any(WrittenVisitor).map_err(|e: D::Error| {
            let message = e.to_string();
            if message.starts_with("invalid type") {
                de::Error::custom("must be a string in quotes (the value is not shown)")
            } else {
                e
            }
        })
    }
}

/// The keys of one secret: the value's key, its file key, and its environment variable if it has one.
pub(super) struct Keys<'a> {
    pub key: &'a str,
    pub file_key: &'a str,
    pub env: Option<&'static str>,
}

/// One value, or a rotation list (one per line in a file, separated by spaces in the environment).
#[derive(Clone, Copy)]
enum Shape {
    One,
    List,
}

/// What a secret's one source holds, before it is split (rotation lists) or checked.
struct Found {
    values: Vec<String>,
    source: SecretSource,
}

impl Cx<'_> {
    /// A single secret, from exactly one source.
    pub(super) fn secret(
        &self,
        keys: Keys<'_>,
        inline: Option<Written>,
        file: Option<PathBuf>,
    ) -> Result<Secret, ConfigError> {
        if let Some(Written::Many(_)) = inline {
            return Err(self.invalid(keys.key, "must be one string, not a list"));
        }
        let Some(found) = self.find_secret(&keys, inline, file, Shape::One)? else {
            return Ok(Secret::unresolved());
        };
        let value = found.values.into_iter().next().unwrap_or_default();
        if value.is_empty() {
            return Err(self.invalid(keys.key, &format!("the secret {} is empty", found.source)));
        }
        Ok(Secret {
            value: SecretString::from(value),
            source: found.source,
        })
    }

    /// A secret that may be left out: None when none of its sources is set.
    pub(super) fn optional_secret(
        &self,
        keys: Keys<'_>,
        inline: Option<Written>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        let env_set = keys
            .env
            .and_then(|var| (self.env)(var))
            .is_some_and(|v| !v.trim().is_empty());
        if inline.is_none() && file.is_none() && (!env_set || !self.resolve_secrets) {
            return Ok(None);
        }
        self.secret(keys, inline, file).map(Some)
    }

    /// One or more secrets (the first is current, the rest are kept during a rotation): a list in the key, one per
    /// line in the file, separated by spaces in the environment. Each must pass `check`.
    pub(super) fn secrets(
        &self,
        keys: Keys<'_>,
        inline: Option<Written>,
        file: Option<PathBuf>,
        check: fn(&str) -> Result<(), String>,
    ) -> Result<Vec<Secret>, ConfigError> {
        let Some(found) = self.find_secret(&keys, inline, file, Shape::List)? else {
            return Ok(vec![Secret::unresolved()]);
        };
        if found.values.is_empty() {
            return Err(self.invalid(keys.key, &format!("no secret found {}", found.source)));
        }
        let mut secrets = Vec::new();
        for (i, value) in found.values.into_iter().enumerate() {
            if let Err(problem) = check(&value) {
                return Err(self.invalid(keys.key, &format!("secret #{} {}: {problem}", i + 1, found.source)));
            }
            secrets.push(Secret {
                value: SecretString::from(value),
                source: found.source.clone(),
            });
        }
        Ok(secrets)
    }

    /// The one source of a secret; `None` when secrets are not resolved (operator commands).
    fn find_secret(
        &self,
        keys: &Keys<'_>,
        inline: Option<Written>,
        file: Option<PathBuf>,
        shape: Shape,
    ) -> Result<Option<Found>, ConfigError> {
        if !self.resolve_secrets {
            return Ok(None);
        }
        let Keys { key, file_key, env } = *keys;
        let from_env = env.and_then(|var| (self.env)(var).filter(|v| !v.trim().is_empty()).map(|v| (var, v)));
        let both = |a: &str, b: &str| format!("{a} and {b} are both set; use one of them");
        let found = match (inline, file, from_env) {
            (Some(_), Some(_), _) => return Err(self.invalid(key, &both(key, file_key))),
            (Some(_), None, Some((var, _))) => {
                return Err(self.invalid(key, &both(key, &format!("the environment variable {var}"))));
            }
            (None, Some(_), Some((var, _))) => {
                return Err(self.invalid(file_key, &both(file_key, &format!("the environment variable {var}"))));
            }
            (Some(written), None, None) => Found {
                values: match written {
                    Written::One(v) => vec![v],
                    Written::Many(list) => list,
                },
                source: SecretSource::Key(key.to_owned()),
            },
            (None, Some(path), None) => {
                let path = self.beside_config(path);
                let text = super::read_bounded(&path, MAX_SECRET_FILE_BYTES)
                    .map_err(|e| self.invalid(file_key, &format!("cannot read {}: {e}", path.display())))?;
                let values = match shape {
                    Shape::One => vec![trim_newline(text)],
                    Shape::List => text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                };
                Found {
                    values,
                    source: SecretSource::File(path),
                }
            }
            (None, None, Some((var, value))) => Found {
                values: match shape {
                    Shape::One => vec![value],
                    Shape::List => value.split_whitespace().map(str::to_owned).collect(),
                },
                source: SecretSource::Env(var),
            },
            (None, None, None) => {
                let env = env.map_or(String::new(), |var| format!(", or the environment variable {var}"));
                return Err(self.invalid(key, &format!("no secret configured: set {key}, {file_key}{env}")));
            }
        };
        Ok(Some(found))
    }
}

fn trim_newline(text: String) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
}
