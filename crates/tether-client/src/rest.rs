//! The REST half of the API: history, single messages, versions, channel
//! bounds, and a one-shot publish. Usable on its own (no WebSocket) through
//! [`Rest`]; a [`crate::Channel`] uses the same client.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_core::{ChannelName, ErrorCode, Message, NewMessage, Serial};

use crate::auth::Auth;
use crate::endpoint::Endpoint;
use crate::error::{Error, root_cause};
use crate::options::ClientOptions;
use crate::presence::Member;
use tether_protocol::ErrorBody;
use tether_protocol::rest::{AckBody, Members, PublishBody, Versions};

/// The acknowledgement of an applied operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The message's serial (of its create).
    pub serial: Serial,
    /// The serial of the version this operation produced.
    pub version_serial: Serial,
    /// The server already had this operation and stored nothing new: a
    /// repeated idempotent publish.
    pub duplicate: bool,
}

impl From<AckBody> for Ack {
    fn from(ack: AckBody) -> Ack {
        Ack {
            serial: ack.serial,
            version_serial: ack.version_serial,
            duplicate: ack.duplicate,
        }
    }
}

/// Which way a history page goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first (the server's default).
    #[default]
    Backwards,
}

/// Parameters of `GET /channels/{channel}/messages`. All bounds are
/// inclusive and combine.
///
/// ```
/// use tether_client::{Direction, HistoryQuery};
/// let query = HistoryQuery::default().limit(50).direction(Direction::Forwards);
/// assert_eq!(query.limit, Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Page size, 1-1000 (server default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Order of the page.
    pub direction: Direction,
    /// The previous page's [`HistoryPage::next`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only messages with serial >= this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Serial>,
    /// Only messages with serial <= this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Serial>,
    /// Only messages created at or after this time (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_time: Option<u64>,
    /// Only messages created at or before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_time: Option<u64>,
}

impl HistoryQuery {
    /// Sets the page size.
    pub fn limit(mut self, limit: usize) -> HistoryQuery {
        self.limit = Some(limit);
        self
    }

    /// Sets the direction.
    pub fn direction(mut self, direction: Direction) -> HistoryQuery {
        self.direction = direction;
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: impl Into<String>) -> HistoryQuery {
        self.cursor = Some(cursor.into());
        self
    }
}

/// One page of current messages.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The current version of each message, in the requested direction.
    pub messages: Vec<Message>,
    /// Pass to [`HistoryQuery::cursor`] for the next page; `None` when
    /// there is no more.
    #[serde(default)]
    pub next: Option<String>,
}

/// The bounds of a channel's log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The channel.
    pub channel: String,
    /// The log's generation; `None` for a channel never written.
    pub epoch: Option<u64>,
    /// The oldest position still kept.
    pub first: Option<Serial>,
    /// The head: what an up-to-date subscriber holds.
    pub position: Option<Serial>,
}

impl From<tether_protocol::rest::HistoryPage> for HistoryPage {
    fn from(page: tether_protocol::rest::HistoryPage) -> HistoryPage {
        HistoryPage {
            messages: page.messages,
            next: page.next.map(|cursor| cursor.to_string()),
        }
    }
}

impl From<tether_protocol::rest::ChannelInfo> for ChannelInfo {
    fn from(info: tether_protocol::rest::ChannelInfo) -> ChannelInfo {
        ChannelInfo {
            channel: info.channel.as_str().to_owned(),
            epoch: info.epoch,
            first: info.first,
            position: info.position,
        }
    }
}

/// A REST client for one server.
///
/// ```no_run
/// # async fn run() -> Result<(), tether_client::Error> {
/// use tether_client::{ClientOptions, HistoryQuery, Rest};
/// let rest = Rest::new("http://127.0.0.1:7400", &ClientOptions::default())?;
/// let mut query = HistoryQuery::default().limit(100);
/// loop {
///     let page = rest.history("chat:1", &query).await?;
///     for message in &page.messages {
///         println!("{} {}", message.serial, message.data);
///     }
///     match page.next {
///         Some(next) => query = query.cursor(next),
///         None => break,
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    endpoint: Endpoint,
    /// Shared with the WebSocket of the same client, so a renewed token
    /// serves both.
    auth: Arc<Auth>,
}

impl Rest {
    /// A client for the server at `url` (`http://host:port`), with the
    /// credential of `options` (token, renewal callback, or key).
    pub fn new(url: &str, options: &ClientOptions) -> Result<Rest, Error> {
        Ok(Rest::with_endpoint(
            Endpoint::parse(url)?,
            options,
            Auth::new(options),
        ))
    }

    pub(crate) fn with_endpoint(
        endpoint: Endpoint,
        options: &ClientOptions,
        auth: Arc<Auth>,
    ) -> Rest {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .build()
            .unwrap_or_default();
        Rest {
            http,
            endpoint,
            auth,
        }
    }

    /// A page of a channel's history (current version of each message).
    pub async fn history(&self, channel: &str, query: &HistoryQuery) -> Result<HistoryPage, Error> {
        let channel = ChannelName::new(channel)?;
        let url = self
            .endpoint
            .rest(&["channels", channel.as_str(), "messages"]);
        let page: tether_protocol::rest::HistoryPage = self
            .send(self.http.get(url.clone()).query(query), url)
            .await?;
        Ok(page.into())
    }

    /// The current version of one message.
    pub async fn message(&self, channel: &str, serial: Serial) -> Result<Message, Error> {
        let channel = ChannelName::new(channel)?;
        let serial = serial.to_string();
        let url = self
            .endpoint
            .rest(&["channels", channel.as_str(), "messages", &serial]);
        self.send(self.http.get(url.clone()), url).await
    }

    /// Every version of a message, oldest first.
    pub async fn versions(&self, channel: &str, serial: Serial) -> Result<Vec<Message>, Error> {
        let channel = ChannelName::new(channel)?;
        let serial = serial.to_string();
        let url = self.endpoint.rest(&[
            "channels",
            channel.as_str(),
            "messages",
            &serial,
            "versions",
        ]);
        let body: Versions = self.send(self.http.get(url.clone()), url).await?;
        Ok(body.versions)
    }

    /// The bounds of a channel's log.
    pub async fn channel_info(&self, channel: &str) -> Result<ChannelInfo, Error> {
        let channel = ChannelName::new(channel)?;
        let url = self.endpoint.rest(&["channels", channel.as_str()]);
        let info: tether_protocol::rest::ChannelInfo =
            self.send(self.http.get(url.clone()), url).await?;
        Ok(info.into())
    }

    /// The members present on a channel right now (needs the
    /// `presence-subscribe` capability).
    pub async fn presence(&self, channel: &str) -> Result<Vec<Member>, Error> {
        let channel = ChannelName::new(channel)?;
        let url = self
            .endpoint
            .rest(&["channels", channel.as_str(), "presence"]);
        let body: Members<'static> = self.send(self.http.get(url.clone()), url).await?;
        Ok(body.members.into_iter().map(Member::from).collect())
    }

    /// Publishes one message over HTTP. For many messages, or streaming,
    /// a [`crate::Channel`] over the WebSocket is much cheaper.
    pub async fn publish(&self, channel: &str, message: &NewMessage) -> Result<Ack, Error> {
        let channel = ChannelName::new(channel)?;
        let url = self
            .endpoint
            .rest(&["channels", channel.as_str(), "messages"]);
        let body = PublishBody::One(message.clone());
        let ack: AckBody = self
            .send(self.http.post(url.clone()).json(&body), url)
            .await?;
        Ok(ack.into())
    }

    /// Sends with the credential; a token the server says expired is
    /// renewed (when a callback is set) and the request tried once more.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: reqwest::Url,
    ) -> Result<T, Error> {
        let retry = request.try_clone().filter(|_| self.auth.can_renew());
        let token = self.auth.token().await?;
        let result = self.send_once(request, token.as_deref(), &url).await;
        match (result, retry) {
            (Err(err), Some(retry)) if err.code() == Some(ErrorCode::TokenExpired) => {
                self.auth.invalidate();
                let token = self.auth.token().await?;
                self.send_once(retry, token.as_deref(), &url).await
            }
            (result, _) => result,
        }
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
        url: &reqwest::Url,
    ) -> Result<T, Error> {
        let request = self.auth.apply(request, token);
        let response = request.send().await.map_err(|e| transport(url, &e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| transport(url, &e))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| Error::Protocol(format!("unexpected body from {url}: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => Err(Error::Server(error)),
            Err(_) => Err(Error::Http {
                url: url.to_string(),
                reason: format!("HTTP status {status}"),
            }),
        }
    }
}

/// A failed request as a one-line error; refused connections become
/// [`Error::Connect`] so callers can treat "server down" alike everywhere.
fn transport(url: &reqwest::Url, err: &reqwest::Error) -> Error {
    let reason = root_cause(err);
    if err.is_connect() || err.is_timeout() {
        let mut origin = url.clone();
        origin.set_path("");
        origin.set_query(None);
        Error::Connect {
            url: origin.to_string().trim_end_matches('/').to_owned(),
            reason,
        }
    } else {
        Error::Http {
            url: url.to_string(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_query_encodes_like_the_server_expects() {
        let query = HistoryQuery::default()
            .limit(10)
            .direction(Direction::Forwards)
            .cursor("c1");
        let text = serde_json::to_value(&query).expect("serializes");
        assert_eq!(
            text,
            serde_json::json!({"limit": 10, "direction": "forwards", "cursor": "c1"})
        );
    }

    #[test]
    fn pages_decode() {
        let page: HistoryPage =
            serde_json::from_str(r#"{"messages":[],"next":null}"#).expect("decodes");
        assert!(page.messages.is_empty() && page.next.is_none());
    }
}
