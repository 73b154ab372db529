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

use tether_core::{Capabilities, ErrorCode, ErrorInfo};

pub mod credentials;
pub mod token;

pub use credentials::Credentials;
pub use tether_engine::principal::{Authorized, CredentialKind, Principal, convention_denied};
pub use token::{TokenClaims, TokenRequest};

/// Key name a connection waiting for its `auth` frame is registered under
/// for resume bookkeeping. Configuration refuses a key of this name, so no
/// credential can match it. (Such connections are counted in their own
/// pool, not under any key: see [`crate::limits`].)
pub const UNAUTHENTICATED: &str = "-";

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

/// Shortest secret an API key may have. The secret signs the key's HS256
/// tokens, so a short one could be guessed offline from any token seen.
const MIN_SECRET_LEN: usize = 16;

/// Whether `name` and `secret` make an acceptable API key: a non-empty
/// name without `:` (the separator of `name:secret`) and a secret of at
/// least 16 bytes. The one rule for the server's configuration and
/// for `tether token`, so the CLI never mints a token the server would
/// refuse to verify. The error says what is wrong, for people.
pub fn check_key(name: &str, secret: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(':') {
        return Err(format!(
            "key {name:?}: the name must be non-empty and contain no ':'"
        ));
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "key {name:?}: the secret is {} bytes long; it must be at least {MIN_SECRET_LEN}",
            secret.len()
        ));
    }
    Ok(())
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
