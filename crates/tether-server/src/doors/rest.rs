//! REST: publish, mutate and read channels over plain HTTP.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tether_core::{
    AppendOp, ChannelName, DeleteOp, ErrorCode, ErrorInfo, Message, Operation, Serial, UpdateOp,
};
use tether_protocol::rest::{
    ChannelInfo, HistoryPage, Members, PublishBody, PublishResult, PublishResults, TokenResponse,
    Versions,
};
use tether_protocol::{DEFAULT_PAGE, MAX_PAGE};
use tether_store::{Direction, HistoryQuery};

use super::caller::Caller;
use crate::auth::Principal;
use crate::engine::{Identity, store_error};
use crate::error::ApiError;
use crate::protocol::{self, AckBody, ErrorBody};
use crate::state::App;
use tether_core::capability::Operation as Cap;

/// `POST /channels/{channel}/messages`
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
            Ok((StatusCode::CREATED, Json(ack)).into_response())
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
            Ok((StatusCode::CREATED, Json(PublishResults { results })).into_response())
        }
    }
}

/// `POST /channels/{channel}/messages/{serial}/append`
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    limit: Option<usize>,
    direction: Option<Direction>,
    cursor: Option<String>,
    start: Option<String>,
    end: Option<String>,
    from_time: Option<u64>,
    to_time: Option<u64>,
    // Credentials may come as query parameters (see auth::extract).
    #[serde(rename = "token")]
    _token: Option<String>,
    #[serde(rename = "key")]
    _key: Option<String>,
    #[serde(rename = "client_id")]
    _client_id: Option<String>,
}

/// `GET /channels/{channel}/messages`
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
pub(crate) async fn mint_token(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(key): Path<String>,
    body: Result<Json<crate::auth::TokenRequest>, JsonRejection>,
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
        Err(JsonRejection::MissingJsonContentType(_)) => crate::auth::TokenRequest::default(),
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
