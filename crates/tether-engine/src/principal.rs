//! Who a caller is once its credential checked out, and what it may do:
//! the [`Principal`] and its capability checks. Kept apart from how a
//! credential is parsed and verified (the rest of `auth`), because
//! authorization runs in the engine, which knows nothing of HTTP.

use tether_core::capability::Operation;
use tether_core::conventions::{self, Authority};
use tether_core::{Capabilities, ChannelName};

use crate::error::EngineError;

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
    pub fn require(&self, channel: &ChannelName, op: Operation) -> Result<(), EngineError> {
        if self.allows(channel, op) {
            Ok(())
        } else {
            Err(forbidden(channel, op))
        }
    }

    /// For an update/append (`update = true`) or delete: `Ok(false)` if the
    /// caller may change any message, `Ok(true)` if only its own, else 40300.
    pub fn mutation_scope(&self, channel: &ChannelName, update: bool) -> Result<bool, EngineError> {
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
    ) -> Result<Authorized, EngineError> {
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
    ) -> Result<Authorized, EngineError> {
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

fn forbidden(channel: &ChannelName, op: Operation) -> EngineError {
    EngineError::Forbidden {
        channel: channel.clone(),
        operation: op,
    }
}

/// A convention refusal as clients see it (`40300`, same text as the
/// writer's).
pub fn convention_denied(denied: conventions::Denied) -> EngineError {
    EngineError::ConventionDenied(denied)
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
