//! Authentication and authorization: who a caller is, and what it may do.
//!
//! Two kinds of credential:
//! - **API keys** (`name:secret`, from config) for trusted back ends. Sent as
//!   HTTP Basic auth, or `?key=name:secret`. A key holder may say which
//!   `client_id` it acts as.
//! - **Tokens** (JWTs) for browsers and devices, minted by a key holder.
//!   HS256-signed with the key's secret (`kid` = key name), or RS256/ES256
//!   verified against configured public keys. A token fixes the `client_id`
//!   and can only narrow its key's capabilities.
//!
//! The server, not the payload, sets `client_id` on everything a caller
//! does; see [`Principal`].

use std::collections::HashMap;

use tether_core::capability::Operation;
use tether_core::conventions::{self, Authority};
use tether_core::{Capabilities, ChannelName, ErrorCode, ErrorInfo};

pub mod extract;

pub mod credentials;
pub mod token;

pub use credentials::Credentials;
pub use token::{TokenClaims, TokenRequest};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The identity stamped on its messages and presence; `None` for an
    /// anonymous key holder.
    pub client_id: Option<String>,
    /// The key it belongs to (the API key used, or the token's `kid`).
    pub key: String,
    /// What the credential grants (a token's own claim, or the key's).
    pub capabilities: Capabilities,
    /// The key's capabilities: a token never exceeds them.
    pub ceiling: Capabilities,
    /// When the credential expires (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
    /// What kind of credential it presented: decides whom per-credential
    /// limits count against (see [`Principal::credential_id`]).
    pub kind: CredentialKind,
}

/// The kind of credential a caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// None, accepted because the server runs with `--dev`.
    Dev,
    /// An API key (`name:secret`).
    Key,
    /// A token (JWT) minted for one client.
    Token,
}

/// What [`Principal::authorize`] allows for one operation; the store's
/// writer enforces both parts atomically with the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized {
    /// Only the caller's own messages may be changed (`message-*-own`).
    pub own_only: bool,
    /// The caller's rights for the message conventions.
    pub authority: Authority,
}

impl Principal {
    /// The principal of `--dev` mode: everything, everywhere.
    pub fn dev(client_id: Option<String>) -> Principal {
        Principal {
            client_id,
            key: "dev".into(),
            capabilities: Capabilities::all(),
            ceiling: Capabilities::all(),
            expires_at: None,
            kind: CredentialKind::Dev,
        }
    }

    /// Whom per-credential limits (mutation rate, LLM jobs) count
    /// against. A key's holder is one party however many clients it says it
    /// acts for (else it could multiply its budget by naming new ones); a
    /// token is its key's grant to one client; without credentials
    /// (`--dev`) the client id, else the connection, else one shared
    /// budget for everything anonymous.
    pub fn credential_id(&self, connection_id: Option<&str>) -> String {
        match (self.kind, &self.client_id, connection_id) {
            (CredentialKind::Key, _, _) => format!("key:{}", self.key),
            // The key's length keeps `a` + `b:c` apart from `a:b` + `c`.
            (CredentialKind::Token, client, _) => format!(
                "token:{}:{}:{}",
                self.key.len(),
                self.key,
                client.as_deref().unwrap_or("")
            ),
            (CredentialKind::Dev, Some(client), _) => format!("dev:client:{client}"),
            (CredentialKind::Dev, None, Some(connection)) => format!("dev:connection:{connection}"),
            (CredentialKind::Dev, None, None) => "dev".into(),
        }
    }

    /// Whose idempotency ids the caller's publishes use: its `client_id`,
    /// or its key name when it acts as no client. Two identities reusing a
    /// message id get two messages; one identity re-sending gets the
    /// original back.
    pub fn publisher(&self) -> String {
        match &self.client_id {
            Some(client) => format!("c:{client}"),
            None => format!("k:{}", self.key),
        }
    }

    /// The caller's rights for the message conventions on `channel`.
    pub fn authority(&self, channel: &ChannelName) -> Authority {
        Authority {
            publish: self.allows(channel, Operation::Publish),
            operator: self.allows(channel, Operation::Operator),
        }
    }

    /// Whether the caller may do `op` on `channel`.
    pub fn allows(&self, channel: &ChannelName, op: Operation) -> bool {
        self.capabilities.allows(channel, op) && self.ceiling.allows(channel, op)
    }

    /// `Ok` if allowed, otherwise the `40300` error naming what is missing.
    pub fn require(&self, channel: &ChannelName, op: Operation) -> Result<(), ErrorInfo> {
        if self.allows(channel, op) {
            Ok(())
        } else {
            Err(forbidden(channel, op))
        }
    }

    /// For an update/append (`update = true`) or delete: `Ok(false)` if the
    /// caller may change any message, `Ok(true)` if only its own, else 40300.
    pub fn mutation_scope(&self, channel: &ChannelName, update: bool) -> Result<bool, ErrorInfo> {
        let (any, own) = if update {
            (Operation::MessageUpdateAny, Operation::MessageUpdateOwn)
        } else {
            (Operation::MessageDeleteAny, Operation::MessageDeleteOwn)
        };
        if self.allows(channel, any) {
            Ok(false)
        } else if self.allows(channel, own) && self.client_id.is_some() {
            Ok(true)
        } else {
            Err(forbidden(channel, own))
        }
    }

    /// Checks that the caller may perform `op` on `channel`: the
    /// operation's capability, and the message conventions (a `handoff`
    /// needs `operator`, a `cancel` needs `publish`; see
    /// [`tether_core::conventions::check`]). What depends on the target's
    /// current state (its creator, its current name) is returned for the
    /// store's writer to enforce atomically with the write.
    ///
    /// Only the engine calls this, on every path that creates or changes a
    /// message, so no front door can forget it.
    pub fn authorize(
        &self,
        channel: &ChannelName,
        op: &tether_core::Operation,
    ) -> Result<Authorized, ErrorInfo> {
        let authority = self.authority(channel);
        let (own_only, new_name) = match op {
            tether_core::Operation::Create(message) => {
                return self.authorize_publish(channel, message);
            }
            tether_core::Operation::Append { append, .. } => {
                (self.mutation_scope(channel, true)?, append.name.as_deref())
            }
            tether_core::Operation::Update { update, .. } => {
                (self.mutation_scope(channel, true)?, update.name.as_deref())
            }
            tether_core::Operation::Delete { .. } => (self.mutation_scope(channel, false)?, None),
        };
        // The name the operation gives is known now; refuse early. The name
        // it takes away is checked by the writer.
        conventions::check(None, new_name, authority).map_err(convention_denied)?;
        Ok(Authorized {
            own_only,
            authority,
        })
    }

    /// [`Principal::authorize`] for publishing `message` (stored or
    /// ephemeral).
    pub fn authorize_publish(
        &self,
        channel: &ChannelName,
        message: &tether_core::NewMessage,
    ) -> Result<Authorized, ErrorInfo> {
        self.require(channel, Operation::Publish)?;
        let authority = self.authority(channel);
        conventions::check(None, message.name.as_deref(), authority).map_err(convention_denied)?;
        Ok(Authorized {
            own_only: false,
            authority,
        })
    }

    /// Whether the credential has expired at `now` (seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

fn forbidden(channel: &ChannelName, op: Operation) -> ErrorInfo {
    ErrorInfo::new(
        ErrorCode::Forbidden,
        format!("your credential does not grant {op} on {channel}"),
    )
}

/// A convention refusal as clients see it (`40300`, same text as the
/// writer's).
pub fn convention_denied(denied: conventions::Denied) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::Forbidden, denied.to_string())
}

/// One configured API key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The shared secret (also signs HS256 tokens).
    pub secret: String,
    /// What the key may do; everything when omitted.
    #[serde(default = "Capabilities::all")]
    pub capabilities: Capabilities,
}

/// An external token issuer's public key (RS256 or ES256).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// `RS256` or `ES256`.
    pub algorithm: String,
    /// The PEM-encoded public key.
    pub pem: String,
    /// The most a token from this issuer may grant.
    #[serde(default = "Capabilities::all")]
    pub capabilities: Capabilities,
}

/// Verifies credentials against the configured keys.
pub struct Authenticator {
    dev: bool,
    keys: HashMap<String, KeyConfig>,
    issuers: HashMap<String, token::Issuer>,
    /// Longest token lifetime accepted and minted (seconds).
    max_token_lifetime_secs: u64,
}

/// Default of [`Authenticator::with_max_token_lifetime`]: seven days, as
/// `max_token_lifetime_secs` in the config.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 7 * 24 * 60 * 60;

/// Why an authenticator cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("public key {kid}: {reason}")]
pub struct BadPublicKey {
    /// The key id.
    pub kid: String,
    /// What is wrong.
    pub reason: String,
}

impl Authenticator {
    /// Builds from config. `dev` accepts missing credentials as [`Principal::dev`].
    pub fn new(
        dev: bool,
        keys: HashMap<String, KeyConfig>,
        public_keys: &HashMap<String, PublicKeyConfig>,
    ) -> Result<Authenticator, BadPublicKey> {
        let issuers = public_keys
            .iter()
            .map(|(kid, cfg)| Ok((kid.clone(), token::Issuer::new(kid, cfg)?)))
            .collect::<Result<_, BadPublicKey>>()?;
        Ok(Authenticator {
            dev,
            keys,
            issuers,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        })
    }

    /// Sets the longest token lifetime accepted on verify (longer tokens
    /// get `40100`) and minted (`40008`), so a stolen token's usefulness
    /// is bounded even when its issuer set a far `exp`.
    pub fn with_max_token_lifetime(mut self, secs: u64) -> Authenticator {
        self.max_token_lifetime_secs = secs;
        self
    }

    /// Whether missing credentials are accepted.
    pub fn dev(&self) -> bool {
        self.dev
    }

    /// A `--dev` server started without keys cannot verify any token, so
    /// "signed by unknown key" would send its user hunting for a key that
    /// does not exist: say what dev mode does instead.
    fn explain_keyless_dev(&self, err: ErrorInfo) -> ErrorInfo {
        if !(self.dev && self.keys.is_empty() && self.issuers.is_empty()) {
            return err;
        }
        ErrorInfo {
            message: format!(
                "{}: this server runs with --dev and no keys, so it verifies no tokens; \
                 connect without a credential, or start it with --key name:secret and mint \
                 tokens with that key",
                err.message
            ),
            ..err
        }
    }

    /// Establishes who is calling. `client_id` is what the caller asked to
    /// act as: honoured for key holders and dev mode, and for a token only
    /// if it matches the token's own.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        client_id: Option<String>,
    ) -> Result<Principal, ErrorInfo> {
        match credentials {
            Credentials::None if self.dev => Ok(Principal::dev(client_id)),
            Credentials::None => Err(ErrorInfo::new(
                ErrorCode::Unauthorized,
                "a credential is required: an API key (Basic auth or ?key=) or a token (Bearer or ?token=)",
            )),
            Credentials::Key { name, secret } => {
                let key = self.key(name, secret)?;
                Ok(Principal {
                    client_id,
                    key: name.clone(),
                    capabilities: key.capabilities.clone(),
                    ceiling: key.capabilities.clone(),
                    expires_at: None,
                    kind: CredentialKind::Key,
                })
            }
            Credentials::Token(jwt) => {
                let principal =
                    token::verify(jwt, &self.keys, &self.issuers, self.max_token_lifetime_secs)
                        .map_err(|err| self.explain_keyless_dev(err))?;
                if client_id.is_some() && client_id != principal.client_id {
                    return Err(ErrorInfo::new(
                        ErrorCode::Forbidden,
                        "client_id is fixed by your token and cannot be chosen",
                    ));
                }
                Ok(principal)
            }
        }
    }

    /// Checks a key's secret in constant time.
    pub fn key(&self, name: &str, secret: &str) -> Result<&KeyConfig, ErrorInfo> {
        use subtle::ConstantTimeEq;
        let invalid = || ErrorInfo::new(ErrorCode::Unauthorized, "invalid API key");
        let key = self.keys.get(name).ok_or_else(invalid)?;
        if bool::from(key.secret.as_bytes().ct_eq(secret.as_bytes())) {
            Ok(key)
        } else {
            Err(invalid())
        }
    }

    /// Mints a token for the holder of key `name` (already authenticated).
    pub fn mint(&self, name: &str, mut request: TokenRequest) -> Result<(String, u64), ErrorInfo> {
        let key = self
            .keys
            .get(name)
            .ok_or_else(|| ErrorInfo::new(ErrorCode::Unauthorized, "invalid API key"))?;
        let max = self.max_token_lifetime_secs.min(token::MAX_TTL_SECS);
        // The default lifetime never exceeds what verify accepts.
        request.ttl_secs = request.ttl_secs.or(Some(token::DEFAULT_TTL_SECS.min(max)));
        if let Some(ttl) = request.ttl_secs
            && ttl > max
        {
            return Err(ErrorInfo::new(
                ErrorCode::InvalidParameter,
                format!("ttl_secs must be between 1 and {max} (max_token_lifetime_secs)"),
            ));
        }
        token::mint(name, key, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(kind: CredentialKind, key: &str, client_id: Option<&str>) -> Principal {
        Principal {
            client_id: client_id.map(str::to_owned),
            key: key.into(),
            capabilities: Capabilities::all(),
            ceiling: Capabilities::all(),
            expires_at: None,
            kind,
        }
    }

    #[test]
    fn credentials_for_limits() {
        use CredentialKind::{Dev, Key, Token};
        // A key is one party whatever client it acts for.
        assert_eq!(
            principal(Key, "app", Some("a")).credential_id(Some("c_1")),
            principal(Key, "app", Some("b")).credential_id(None)
        );
        // Tokens of one key differ by client, and cannot alias each other.
        assert_ne!(
            principal(Token, "a", Some("b:c")).credential_id(None),
            principal(Token, "a:b", Some("c")).credential_id(None)
        );
        assert_ne!(
            principal(Token, "app", Some("u1")).credential_id(None),
            principal(Key, "app", Some("u1")).credential_id(None)
        );
        // Dev: the client, else the connection, else one shared budget.
        assert_eq!(
            principal(Dev, "dev", Some("u1")).credential_id(Some("c_1")),
            "dev:client:u1"
        );
        assert_eq!(
            principal(Dev, "dev", None).credential_id(Some("c_1")),
            "dev:connection:c_1"
        );
        assert_eq!(principal(Dev, "dev", None).credential_id(None), "dev");
    }

    #[test]
    fn publishers_for_idempotency() {
        use CredentialKind::{Key, Token};
        // The same client is the same publisher through a key or a token.
        assert_eq!(
            principal(Key, "app", Some("u1")).publisher(),
            principal(Token, "app", Some("u1")).publisher()
        );
        assert_eq!(principal(Key, "app", None).publisher(), "k:app");
        // A client named like a key is still another publisher.
        assert_ne!(
            principal(Key, "app", None).publisher(),
            principal(Key, "other", Some("app")).publisher()
        );
    }
}
