//! Where a server is: one URL given by the user, turned into the WebSocket
//! URL and the base of every REST path.

use reqwest::Url;

use crate::error::Error;
use crate::options::ClientOptions;

/// The two front doors of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http://host:port/prefix/`: REST paths are joined onto it.
    pub(crate) base: Url,
    /// `ws://host:port/prefix/ws`, without credentials.
    pub(crate) ws: Url,
}

impl Endpoint {
    /// Accepts `http(s)://host[:port][/prefix]` or the WebSocket URL
    /// itself, `ws(s)://host[:port][/prefix]/ws`.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let (http_scheme, ws_scheme) = match parsed.scheme() {
            "http" | "ws" => ("http", "ws"),
            "https" | "wss" => {
                return Err(invalid(
                    "TLS (https://, wss://) is not supported by this build of the SDK yet; \
                     use http:// or put a TLS-terminating proxy in front",
                ));
            }
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?}; expected http:// or ws://"
                )));
            }
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a query or fragment is not expected"));
        }
        let mut path = parsed.path().trim_end_matches('/').to_owned();
        if parsed.scheme() == "ws" {
            path = path.strip_suffix("/ws").unwrap_or(&path).to_owned();
        }
        let mut base = parsed.clone();
        base.set_scheme(http_scheme)
            .map_err(|()| invalid("cannot use as http URL"))?;
        base.set_path(&format!("{path}/"));
        let mut ws = parsed;
        ws.set_scheme(ws_scheme)
            .map_err(|()| invalid("cannot use as ws URL"))?;
        ws.set_path(&format!("{path}/ws"));
        Ok(Endpoint { base, ws })
    }

    /// The base URL extended with path `segments` (each percent-encoded as
    /// needed, so channel names and serials are safe).
    pub(crate) fn rest(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The WebSocket URL with the credential's query parameters (see
    /// `Auth::query`) and the roll-up window the options ask for.
    pub(crate) fn ws_with(&self, credential: &[(&str, String)], options: &ClientOptions) -> Url {
        let mut url = self.ws.clone();
        let rollup = options.rollup_ms.map(|ms| ms.to_string());
        let rollup = rollup.iter().map(|ms| ("rollup_ms", ms.as_str()));
        let pairs: Vec<(&str, &str)> = credential
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(rollup)
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> (String, String) {
        let e = Endpoint::parse(url).expect("valid");
        (e.base.to_string(), e.ws.to_string())
    }

    #[test]
    fn http_and_ws_forms_agree() {
        let want = (
            "http://127.0.0.1:7400/".to_owned(),
            "ws://127.0.0.1:7400/ws".to_owned(),
        );
        assert_eq!(parse("http://127.0.0.1:7400"), want);
        assert_eq!(parse("http://127.0.0.1:7400/"), want);
        assert_eq!(parse("ws://127.0.0.1:7400/ws"), want);
        assert_eq!(parse("ws://127.0.0.1:7400"), want);
    }

    #[test]
    fn keeps_a_path_prefix() {
        let (base, ws) = parse("http://example.invalid/tether/");
        assert_eq!(base, "http://example.invalid/tether/");
        assert_eq!(ws, "ws://example.invalid/tether/ws");
        let e = Endpoint::parse("http://example.invalid/tether").expect("valid");
        assert_eq!(
            e.rest(&["channels", "chat:1", "messages"]).as_str(),
            "http://example.invalid/tether/channels/chat:1/messages"
        );
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "127.0.0.1:7400",
            "ftp://host",
            "https://host",
            "http://",
            "http://h/?x=1",
            "not a url",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn options_go_in_the_query() {
        let e = Endpoint::parse("http://h:1").expect("valid");
        let none = ClientOptions::default();
        assert_eq!(e.ws_with(&[], &none).as_str(), "ws://h:1/ws");
        let options = ClientOptions::default()
            .token("a b&c")
            .client_id("agent")
            .rollup_ms(0);
        let credential = crate::auth::Auth::new(&options).query(options.token.as_deref());
        assert_eq!(
            e.ws_with(&credential, &options).as_str(),
            "ws://h:1/ws?token=a+b%26c&client_id=agent&rollup_ms=0"
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        let e = Endpoint::parse("http://h:1").expect("valid");
        assert_eq!(
            e.rest(&["channels", "a/b?c", "messages"]).as_str(),
            "http://h:1/channels/a%2Fb%3Fc/messages"
        );
    }
}
