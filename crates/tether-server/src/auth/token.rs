//! Signed tokens (JWT): minting with a key's secret, verifying HS256 tokens
//! against configured keys and RS256/ES256 tokens against public keys.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tether_core::{Capabilities, ErrorCode, ErrorInfo};

use super::{BadPublicKey, KeyConfig, Principal, PublicKeyConfig};

/// Longest token lifetime a key holder may mint (one day).
pub const MAX_TTL_SECS: u64 = 24 * 60 * 60;
/// Lifetime when none is asked for (one hour).
pub const DEFAULT_TTL_SECS: u64 = 60 * 60;
/// Clock skew allowed on `nbf` (seconds): a token whose issuer's clock runs
/// slightly ahead of ours is usable at once, one dated further ahead is not
/// yet valid (`40102`). `exp` gets no leeway: expiry is never extended.
pub const NBF_LEEWAY_SECS: u64 = 30;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The identity the server stamps on everything the bearer does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// What the bearer may do (narrowed by the key's own capabilities).
    pub capabilities: Capabilities,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time.
    #[serde(default)]
    pub iat: u64,
    /// Not valid before (seconds since the Unix epoch), if the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// The body of `POST /keys/{key}/tokens` (a wire type).
pub use tether_protocol::rest::TokenRequest;

/// A configured external issuer.
pub struct Issuer {
    algorithm: Algorithm,
    key: DecodingKey,
    ceiling: Capabilities,
}

impl Issuer {
    pub(super) fn new(kid: &str, cfg: &PublicKeyConfig) -> Result<Issuer, BadPublicKey> {
        let bad = |reason: String| BadPublicKey {
            kid: kid.to_owned(),
            reason,
        };
        let (algorithm, key) = match cfg.algorithm.as_str() {
            "RS256" => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(cfg.pem.as_bytes()),
            ),
            "ES256" => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(cfg.pem.as_bytes()),
            ),
            other => {
                return Err(bad(format!(
                    "unsupported algorithm {other}; use RS256 or ES256"
                )));
            }
        };
        Ok(Issuer {
            algorithm,
            key: key.map_err(|e| bad(e.to_string()))?,
            ceiling: cfg.capabilities.clone(),
        })
    }
}

/// How long a token lives: from its issue time (`iat`, or now when it has
/// none or claims one in the future, whichever is earlier) to `exp`. A token
/// cannot shorten its apparent lifetime by backdating nothing or
/// future-dating `iat`.
pub fn lifetime(claims: &TokenClaims, now: u64) -> u64 {
    let start = match claims.iat {
        0 => now,
        iat => iat.min(now),
    };
    claims.exp.saturating_sub(start)
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn unauthorized(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(ErrorCode::Unauthorized, message)
}

/// Mints an HS256 token signed with `key`'s secret.
pub fn mint(
    name: &str,
    key: &KeyConfig,
    request: TokenRequest,
) -> Result<(String, u64), ErrorInfo> {
    let ttl = request.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ErrorInfo::new(
            ErrorCode::InvalidParameter,
            format!("ttl_secs must be between 1 and {MAX_TTL_SECS}"),
        ));
    }
    let capabilities = request
        .capabilities
        .unwrap_or_else(|| key.capabilities.clone());
    if let Err((pattern, op)) = capabilities.within(&key.capabilities) {
        return Err(ErrorInfo::new(
            ErrorCode::Forbidden,
            format!("a token cannot grant {op} on {pattern}: key {name} does not have it"),
        ));
    }
    let iat = now_secs();
    let claims = TokenClaims {
        client_id: request.client_id,
        capabilities,
        exp: iat.saturating_add(ttl),
        iat,
        nbf: None,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(name.to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.secret.as_bytes()),
    )
    .map_err(|e| ErrorInfo::new(ErrorCode::Internal, format!("cannot sign token: {e}")))?;
    Ok((token, claims.exp))
}

/// Verifies a token. Only the algorithm configured for its `kid` is
/// accepted, so `alg: none` and algorithm confusion are refused. A token
/// whose `nbf` is more than [`NBF_LEEWAY_SECS`] ahead is not yet valid
/// (`40102`); one living longer than `max_lifetime_secs` is refused
/// (`40100`), so a leaked token cannot be good for years (see
/// [`lifetime`]).
pub fn verify(
    jwt: &str,
    keys: &HashMap<String, KeyConfig>,
    issuers: &HashMap<String, Issuer>,
    max_lifetime_secs: u64,
) -> Result<Principal, ErrorInfo> {
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|e| unauthorized(format!("malformed token: {e}")))?;
    let kid = header
        .kid
        .ok_or_else(|| unauthorized("token has no kid (key name)"))?;
    let (algorithm, decoding, ceiling) = if let Some(key) = keys.get(&kid) {
        (
            Algorithm::HS256,
            DecodingKey::from_secret(key.secret.as_bytes()),
            key.capabilities.clone(),
        )
    } else if let Some(issuer) = issuers.get(&kid) {
        (issuer.algorithm, issuer.key.clone(), issuer.ceiling.clone())
    } else {
        return Err(unauthorized(format!("token signed by unknown key {kid:?}")));
    };
    if header.alg != algorithm {
        return Err(unauthorized(format!(
            "key {kid} only signs {algorithm:?} tokens"
        )));
    }
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 0;
    validation.validate_aud = false;
    // Checked below with its own leeway (exp has none).
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<TokenClaims>(jwt, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => {
                ErrorInfo::new(ErrorCode::TokenExpired, "token expired: renew it")
            }
            ErrorKind::InvalidSignature => unauthorized("token signature is invalid"),
            _ => unauthorized(format!("invalid token: {e}")),
        }
    })?;
    let claims = data.claims;
    let now = now_secs();
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(NBF_LEEWAY_SECS)
    {
        return Err(ErrorInfo::new(
            ErrorCode::TokenNotYetValid,
            format!(
                "token not valid before {nbf} (in {} s): wait, or fix the issuer's clock",
                nbf - now
            ),
        ));
    }
    let lifetime = lifetime(&claims, now);
    if lifetime > max_lifetime_secs {
        return Err(unauthorized(format!(
            "token lifetime of {lifetime} s exceeds the server's maximum of {max_lifetime_secs} s \
             (max_token_lifetime_secs): mint a shorter-lived token"
        )));
    }
    Ok(Principal {
        client_id: claims.client_id,
        key: kid,
        capabilities: claims.capabilities,
        ceiling,
        expires_at: Some(claims.exp),
        kind: super::CredentialKind::Token,
    })
}
