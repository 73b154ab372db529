//! `tether token`: mint a token offline with an API key's secret, e.g. in
//! a deployment script or for a quick test from the terminal. The server
//! checks it against the key's configured capabilities on every request,
//! so a token can never do more than its key there.

use std::process::ExitCode;

use clap::Args;
use tether_core::Capabilities;
use tether_core::capability::Grant;

use tether_server::auth::{KeyConfig, TokenRequest, check_key, token};

/// Flags of `tether token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The API key, `name:secret`.
    #[arg(long, env = "TETHER_KEY", hide_env_values = true)]
    pub key: String,
    /// The identity the token fixes.
    #[arg(long)]
    pub client_id: Option<String>,
    /// A capability `PATTERN=op,op` (repeatable), e.g.
    /// `conversation:u1=subscribe,publish`; `*` for every operation.
    /// Without any: everything the key has.
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Lifetime in seconds (at most a day).
    #[arg(long, default_value_t = token::DEFAULT_TTL_SECS)]
    pub ttl: u64,
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> ExitCode {
    match mint(args) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("tether: {message}");
            ExitCode::FAILURE
        }
    }
}

fn mint(args: TokenArgs) -> Result<String, String> {
    let (name, secret) = args
        .key
        .split_once(':')
        .ok_or("--key must be name:secret")?;
    // The server refuses such a key at start-up, so a token signed with it
    // could never be verified: say so instead of printing one.
    check_key(name, secret).map_err(|reason| format!("--key: {reason}"))?;
    let capabilities = if args.capabilities.is_empty() {
        None
    } else {
        Some(parse_capabilities(&args.capabilities)?)
    };
    let key = KeyConfig {
        secret: secret.to_owned(),
        capabilities: Capabilities::all(),
    };
    let request = TokenRequest {
        client_id: args.client_id,
        capabilities,
        ttl_secs: Some(args.ttl),
    };
    token::mint(name, &key, request)
        .map(|(jwt, _)| jwt)
        .map_err(|e| e.message)
}

/// Parses `PATTERN=op,op` flags.
fn parse_capabilities(flags: &[String]) -> Result<Capabilities, String> {
    let mut caps = Capabilities::default();
    for flag in flags {
        let (pattern, ops) = flag
            .split_once('=')
            .ok_or_else(|| format!("--capability {flag:?}: expected PATTERN=op,op"))?;
        let names: Vec<String> = ops.split(',').map(|s| s.trim().to_owned()).collect();
        let grant: Grant = serde_json::from_value(serde_json::json!(names))
            .map_err(|e| format!("--capability {flag:?}: {e}"))?;
        caps.0.insert(pattern.to_owned(), grant);
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capability_flags() {
        let caps =
            parse_capabilities(&["conversation:u1=subscribe,publish".into(), "lobby=*".into()])
                .expect("caps");
        let json = serde_json::to_value(&caps).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"conversation:u1": ["subscribe", "publish"], "lobby": ["*"]})
        );
        assert!(parse_capabilities(&["nope".into()]).is_err());
        assert!(parse_capabilities(&["a=fly".into()]).is_err());
    }
}
