//! REST: publish, mutate and read channels over plain HTTP.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tether_core::{
    AppendOp, ChannelName, DeleteOp, ErrorCode, ErrorInfo, Message, Operation, Serial, UpdateOp,
};
use tether_protocol::rest::{
    ChannelInfo, HistoryPage, Members, PublishBody, PublishResult, PublishResults, TokenRequest,
    TokenResponse, Versions,
};
use tether_protocol::{DEFAULT_PAGE, MAX_PAGE};
use tether_store::{Direction, HistoryQuery};
use utoipa::{IntoParams, ToSchema};

use super::caller::Caller;
use crate::auth::Principal;
use crate::engine::{Identity, store_error};
use crate::error::ApiError;
use crate::protocol::{self, AckBody, ErrorBody};
use crate::state::App;
use tether_core::capability::Operation as Cap;

/// What a publish answers: the ack of one message, or one result per
/// element of an array. One type for both, so the handler and its
/// description (`/openapi.json`) cannot disagree.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PublishReply {
    /// The body was one message.
    One(AckBody),
    /// The body was an array.
    Many(PublishResults),
}

/// `POST /channels/{channel}/messages`
///
/// Publishes one message, or an array of them (applied in order, each
/// answered on its own).
#[utoipa::path(
    post,
    path = "/channels/{channel}/messages",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`.")
    ),
    request_body(content = PublishBody, description = "One new message or an array of them."),
    responses(
        (status = 201, description = "Durable: an ack, or for an array one result per element.", body = PublishReply),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn publish(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
    body: Result<Json<PublishBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    match body?.0 {
        PublishBody::One(message) => {
            let ack = apply(&app, &caller, channel, Operation::Create(message)).await?;
            Ok((StatusCode::CREATED, Json(PublishReply::One(ack))).into_response())
        }
        PublishBody::Many(messages) => {
            // Authorized and charged whole, submitted in order (one batch),
            // then awaited.
            let ops = messages.into_iter().map(Operation::Create).collect();
            let receipts = app
                .engine
                .submit_all(channel, ops, &caller, &identity(&caller))
                .await?;
            let mut results = Vec::with_capacity(receipts.len());
            for receipt in receipts {
                let outcome = match receipt {
                    Ok(receipt) => receipt.await.map_err(store_error),
                    Err(err) => Err(err),
                };
                results.push(match outcome {
                    Ok(ack) => PublishResult::Ok(protocol::ack_body(ack)),
                    Err(error) => PublishResult::Err(ErrorBody {
                        error: error.into(),
                    }),
                });
            }
            let reply = PublishReply::Many(PublishResults { results });
            Ok((StatusCode::CREATED, Json(reply)).into_response())
        }
    }
}

/// `POST /channels/{channel}/messages/{serial}/append`
///
/// Concatenates a fragment onto a message's string data (streaming).
#[utoipa::path(
    post,
    path = "/channels/{channel}/messages/{serial}/append",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("serial" = tether_protocol::openapi::Serial, Path, description = "The message: the serial of its create.")
    ),
    request_body = tether_protocol::openapi::AppendOp,
    responses(
        (status = 200, description = "Durable.", body = AckBody),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn append(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((channel, serial)): Path<(String, String)>,
    body: Result<Json<AppendOp>, JsonRejection>,
) -> Result<Json<AckBody>, ApiError> {
    let (channel, target) = parse_target(&channel, &serial)?;
    let op = Operation::Append {
        target,
        append: body?.0,
    };
    Ok(Json(apply(&app, &caller, channel, op).await?))
}

/// `PATCH /channels/{channel}/messages/{serial}`
///
/// A new version of a message (absent fields stay; extras merge).
#[utoipa::path(
    patch,
    path = "/channels/{channel}/messages/{serial}",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("serial" = tether_protocol::openapi::Serial, Path, description = "The message: the serial of its create.")
    ),
    request_body = tether_protocol::openapi::UpdateOp,
    responses(
        (status = 200, description = "Durable.", body = AckBody),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn update(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((channel, serial)): Path<(String, String)>,
    body: Result<Json<UpdateOp>, JsonRejection>,
) -> Result<Json<AckBody>, ApiError> {
    let (channel, target) = parse_target(&channel, &serial)?;
    let op = Operation::Update {
        target,
        update: body?.0,
    };
    Ok(Json(apply(&app, &caller, channel, op).await?))
}

/// `DELETE /channels/{channel}/messages/{serial}` (body optional)
///
/// Soft delete: the message becomes a tombstone in its place.
#[utoipa::path(
    delete,
    path = "/channels/{channel}/messages/{serial}",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("serial" = tether_protocol::openapi::Serial, Path, description = "The message: the serial of its create.")
    ),
    request_body(content = Option<tether_protocol::openapi::DeleteOp>, description = "Optional: why, and metadata."),
    responses(
        (status = 200, description = "Durable.", body = AckBody),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((channel, serial)): Path<(String, String)>,
    body: Result<Json<DeleteOp>, JsonRejection>,
) -> Result<Json<AckBody>, ApiError> {
    let (channel, target) = parse_target(&channel, &serial)?;
    let delete = match body {
        Ok(Json(delete)) => delete,
        Err(JsonRejection::MissingJsonContentType(_)) => DeleteOp::default(),
        Err(rejection) => return Err(rejection.into()),
    };
    let op = Operation::Delete { target, delete };
    Ok(Json(apply(&app, &caller, channel, op).await?))
}

/// `GET /channels/{channel}/messages/{serial}`
///
/// A message's current version (appends folded in).
#[utoipa::path(
    get,
    path = "/channels/{channel}/messages/{serial}",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("serial" = tether_protocol::openapi::Serial, Path, description = "The message: the serial of its create.")
    ),
    responses(
        (status = 200, description = "The message.", body = tether_protocol::openapi::Message),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn get_message(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((channel, serial)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let (channel, serial) = parse_target(&channel, &serial)?;
    caller.require(&channel, Cap::History)?;
    Ok(Json(app.engine.message(&channel, serial).await?))
}

/// `GET /channels/{channel}/messages/{serial}/versions`
///
/// Every version of a message, oldest first.
#[utoipa::path(
    get,
    path = "/channels/{channel}/messages/{serial}/versions",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        ("serial" = tether_protocol::openapi::Serial, Path, description = "The message: the serial of its create.")
    ),
    responses(
        (status = 200, description = "The versions.", body = Versions),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn versions(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((channel, serial)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (channel, serial) = parse_target(&channel, &serial)?;
    caller.require(&channel, Cap::History)?;
    let versions = app.engine.versions(&channel, serial).await?;
    Ok(Json(Versions { versions }).into_response())
}

/// Query of `GET /channels/{channel}/messages`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// Page size, 1-1000 (default 100).
    limit: Option<usize>,
    /// `backwards` (newest first, the default) or `forwards`.
    #[param(value_type = Option<super::openapi::Direction>)]
    direction: Option<Direction>,
    /// The previous page's `next`.
    #[param(value_type = Option<tether_protocol::openapi::Serial>)]
    cursor: Option<String>,
    /// Oldest serial to include.
    #[param(value_type = Option<tether_protocol::openapi::Serial>)]
    start: Option<String>,
    /// Newest serial to include.
    #[param(value_type = Option<tether_protocol::openapi::Serial>)]
    end: Option<String>,
    /// Earliest creation time, ms since the Unix epoch.
    from_time: Option<u64>,
    /// Latest creation time, ms since the Unix epoch.
    to_time: Option<u64>,
    // Credentials may come as query parameters (see auth::extract); the
    // description has them as security schemes and a shared parameter.
    #[serde(rename = "token")]
    #[param(ignore)]
    _token: Option<String>,
    #[serde(rename = "key")]
    #[param(ignore)]
    _key: Option<String>,
    #[serde(rename = "client_id")]
    #[param(ignore)]
    _client_id: Option<String>,
}

/// `GET /channels/{channel}/messages`
///
/// A page of history: current versions, newest first by default.
#[utoipa::path(
    get,
    path = "/channels/{channel}/messages",
    tag = "messages",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`."),
        HistoryParams
    ),
    responses(
        (status = 200, description = "One page; `next` is the cursor of the following one.", body = HistoryPage),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn history(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::History)?;
    let params = params?.0;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ErrorInfo::new(
            ErrorCode::InvalidParameter,
            format!("limit must be between 1 and {MAX_PAGE}"),
        )
        .into());
    }
    let optional_serial = |s: Option<String>| s.as_deref().map(protocol::serial).transpose();
    let query = HistoryQuery {
        direction: params.direction.unwrap_or_default(),
        limit,
        cursor: optional_serial(params.cursor)?,
        start: optional_serial(params.start)?,
        end: optional_serial(params.end)?,
        from_time: params.from_time,
        to_time: params.to_time,
    };
    let page = app.engine.history(&channel, query).await?;
    Ok(Json(HistoryPage {
        messages: page.messages,
        next: page.next,
    })
    .into_response())
}

/// `GET /channels/{channel}/presence`: the current members.
#[utoipa::path(
    get,
    path = "/channels/{channel}/presence",
    tag = "presence",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`.")
    ),
    responses(
        (status = 200, description = "The members.", body = Members),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn presence(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::PresenceSubscribe)?;
    let (members, _) = app.engine.presence().snapshot(&channel);
    let members = members.iter().map(protocol::wire_member).collect();
    Ok(Json(Members { members }).into_response())
}

/// `GET /channels/{channel}`: the log's bounds.
#[utoipa::path(
    get,
    path = "/channels/{channel}",
    tag = "channels",
    params(
        ("channel" = tether_protocol::openapi::ChannelName, Path, description = "The channel, e.g. `conversation:42`.")
    ),
    responses(
        (status = 200, description = "Epoch, oldest retained serial and head (`null`s for a channel never written).", body = ChannelInfo),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn channel_info(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    let channel = protocol::channel(&channel)?;
    caller.require(&channel, Cap::History)?;
    let bounds = app.engine.bounds(&channel).await?;
    let first = bounds.and_then(|b| Serial::new(b.epoch, b.first_seq));
    Ok(Json(ChannelInfo {
        epoch: bounds.map(|b| b.epoch),
        first,
        position: bounds.map(|b| b.head()),
        channel,
    })
    .into_response())
}

fn parse_target(channel: &str, serial: &str) -> Result<(ChannelName, Serial), ErrorInfo> {
    Ok((protocol::channel(channel)?, protocol::serial(serial)?))
}

/// The identity a REST caller's operations are stamped with.
fn identity(caller: &Principal) -> Identity {
    Identity {
        client_id: caller.client_id.clone(),
        connection_id: None,
    }
}

/// Submits (the engine authorizes and rate-limits) and waits for the
/// durable acknowledgement.
async fn apply(
    app: &App,
    caller: &Principal,
    channel: ChannelName,
    op: Operation,
) -> Result<AckBody, ErrorInfo> {
    let receipt = app
        .engine
        .submit(channel, op, caller, &identity(caller))
        .await?;
    receipt
        .await
        .map(protocol::ack_body)
        .map_err(|e| store_error(e).into())
}

/// `POST /keys/{key}/tokens`: a key holder mints a token for a client.
#[utoipa::path(
    post,
    path = "/keys/{key}/tokens",
    tag = "tokens",
    params(
        ("key" = String, Path, description = "The API key's name; only its holder (Basic auth or `?key=`) may mint.")
    ),
    request_body(content = Option<TokenRequest>, description = "Identity, capabilities (within the key's) and lifetime; all optional."),
    responses(
        (status = 201, description = "The token.", body = TokenResponse),
        (status = "4XX", description = "Refused; the code says why (docs/errors.md).", body = tether_protocol::ErrorBody),
        (status = "5XX", description = "Not applied: server or storage failure, shutting down.", body = tether_protocol::ErrorBody),
    )
)]
pub(crate) async fn mint_token(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    if caller.key != key || caller.expires_at.is_some() {
        return Err(ErrorInfo::new(
            ErrorCode::Forbidden,
            format!("only the holder of API key {key} (Basic auth) can mint its tokens"),
        )
        .into());
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(JsonRejection::MissingJsonContentType(_)) => TokenRequest::default(),
        Err(rejection) => return Err(rejection.into()),
    };
    let client_id = request.client_id.clone();
    let (token, expires_at) = app.auth.mint(&key, request)?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            expires_at,
            client_id,
        }),
    )
        .into_response())
}
