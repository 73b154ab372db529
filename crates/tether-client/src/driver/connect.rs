//! Opening one connection: the WebSocket handshake, then the server's
//! `connected` frame; and turning failures into one-line errors.

use futures::StreamExt;
use tether_core::{ErrorCode, ErrorInfo};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::Ws;
use crate::client::Shared;
use crate::error::{Error, root_cause};
use crate::wire::{self, Hello, Opening};
use tether_protocol::ErrorBody;

/// Opens one connection and waits for its `connected` frame. The token is
/// renewed first if it is refused or about to expire (and a callback is
/// set); a refusal of it marks it for renewal on the next attempt.
pub(crate) async fn open(shared: &Shared) -> Result<(Ws, Hello), Error> {
    let result = open_once(shared).await;
    if let Err(err) = &result
        && matches!(
            err.code(),
            Some(ErrorCode::TokenExpired | ErrorCode::Unauthorized)
        )
    {
        shared.auth.invalidate();
    }
    result
}

async fn open_once(shared: &Shared) -> Result<(Ws, Hello), Error> {
    let options = &shared.options;
    let token = shared.auth.token().await?;
    let credential = shared.auth.query(token.as_deref());
    let url = shared.endpoint.ws_with(&credential, options);
    // Errors name the URL without its credential.
    let shown = shared.endpoint.ws.to_string();
    let connect_error = |reason: String| Error::Connect {
        url: shown.clone(),
        reason,
    };
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| handshake_error(&shown, e))?;
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    let opening = wire::decode(&text).ok().flatten().map(Opening::of);
                    return match opening {
                        // This SDK sends its credential with the upgrade,
                        // so a server still waiting for one needs one we
                        // do not have.
                        Some(Opening::NeedsCredential) => Err(Error::Server(ErrorInfo::new(
                            ErrorCode::Unauthorized,
                            "the server requires a credential: set a token, an auth callback or an API key",
                        ))),
                        Some(Opening::Ready(hello)) => Ok((ws, hello)),
                        Some(Opening::Refused(info)) => Err(Error::Server(info)),
                        Some(Opening::Unexpected) | None => Err(Error::Protocol(
                            "the server did not start with a connected frame".into(),
                        )),
                    };
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(connect_error(close_reason(frame)));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(connect_error(root_cause(&e))),
                None => return Err(connect_error("closed before it was ready".into())),
            }
        }
    };
    tokio::time::timeout(options.connect_timeout, attempt)
        .await
        .map_err(|_| connect_error(format!("timed out after {:?}", options.connect_timeout)))?
}

fn handshake_error(url: &str, err: tungstenite::Error) -> Error {
    let reason = match err {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
                return Error::Server(error);
            }
            format!("the server answered HTTP {}", response.status())
        }
        tungstenite::Error::Url(e) => {
            return Error::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            };
        }
        other => root_cause(&other),
    };
    Error::Connect {
        url: url.to_owned(),
        reason,
    }
}

/// The close code of a close frame (0 when there is none).
pub(super) fn close_code(frame: Option<&tungstenite::protocol::CloseFrame>) -> u16 {
    frame.map_or(0, |frame| u16::from(frame.code))
}

pub(super) fn close_reason(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => {
            format!(
                "closed by the server: {} ({})",
                frame.reason,
                u16::from(frame.code)
            )
        }
        Some(frame) => format!("closed by the server ({})", u16::from(frame.code)),
        None => "closed by the server".into(),
    }
}
