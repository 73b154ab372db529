//! The HTTP side of authentication: an extractor that turns a request's
//! credential into a [`Principal`], for REST, SSE and the WebSocket upgrade.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;

use crate::auth::{Credentials, Principal};
use crate::error::ApiError;
use crate::state::App;

/// Credential-related query parameters, accepted on every route.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthQuery {
    /// A JWT (for clients that cannot set headers).
    pub token: Option<String>,
    /// An API key `name:secret`.
    pub key: Option<String>,
    /// The identity a key holder acts as.
    pub client_id: Option<String>,
}

/// Header in which a key holder names the client it acts for.
pub(crate) const CLIENT_ID_HEADER: &str = "x-tether-client-id";

/// The authenticated caller of a request.
pub(crate) struct Caller(pub Principal);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        let query = Query::<AuthQuery>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let credentials = Credentials::from_request(
            &parts.headers,
            query.token.as_deref(),
            query.key.as_deref(),
        )?;
        let client_id = parts
            .headers
            .get(CLIENT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(query.client_id);
        Ok(Caller(app.auth.authenticate(&credentials, client_id)?))
    }
}
