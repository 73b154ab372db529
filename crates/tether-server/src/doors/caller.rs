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

/// The credential schemes, as `/openapi.json` names them. Every route that
/// takes a [`Caller`] accepts any one of them (see
/// `auth::Credentials::from_request`); public routes declare none.
pub(crate) mod schemes {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::security::{
        ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{OpenApi, Required};
    use utoipa::{Modify, PartialSchema};

    use super::CLIENT_ID_HEADER;

    /// `Authorization: Bearer <jwt>`: a token minted by a key holder.
    pub(crate) const BEARER: &str = "bearer";
    /// `Authorization: Basic base64(name:secret)`: an API key.
    pub(crate) const BASIC: &str = "basic";
    /// `?token=<jwt>`, for clients that cannot set headers (browsers'
    /// `WebSocket` and `EventSource`).
    pub(crate) const TOKEN_QUERY: &str = "token";
    /// `?key=name:secret`, the API key as a query parameter.
    pub(crate) const KEY_QUERY: &str = "key";

    /// Adds the four schemes to the document's components, and to every
    /// authenticated operation the two ways a key holder names the client
    /// it acts for (`x-tether-client-id`, `?client_id=`). Done here, next
    /// to the extractor that reads them, so the description cannot name a
    /// credential the server does not take.
    pub(crate) struct CredentialSchemes;

    impl Modify for CredentialSchemes {
        fn modify(&self, openapi: &mut OpenApi) {
            let components = openapi.components.get_or_insert_with(Default::default);
            components.add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A token (JWT) minted with POST /keys/{key}/tokens or `tether token`; \
                             it fixes the client_id and can only narrow its key's capabilities.",
                        ))
                        .build(),
                ),
            );
            components.add_security_scheme(
                BASIC,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some(
                            "An API key: user name = key name, password = its secret. \
                             For back ends; never ship it to a browser.",
                        ))
                        .build(),
                ),
            );
            components.add_security_scheme(
                TOKEN_QUERY,
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "token",
                    "A token as a query parameter, for clients that cannot set headers.",
                ))),
            );
            components.add_security_scheme(
                KEY_QUERY,
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "key",
                    "An API key `name:secret` as a query parameter.",
                ))),
            );
            for item in openapi.paths.paths.values_mut() {
                let operations = [
                    &mut item.get,
                    &mut item.post,
                    &mut item.patch,
                    &mut item.delete,
                ];
                // Public operations declare one empty requirement (no
                // credential); every other one takes a client id.
                let public = Some(vec![SecurityRequirement::default()]);
                for operation in operations.into_iter().flatten() {
                    if operation.security == public {
                        continue;
                    }
                    let parameters = operation.parameters.get_or_insert_with(Vec::new);
                    parameters.push(client_id(ParameterIn::Header, CLIENT_ID_HEADER));
                    parameters.push(client_id(ParameterIn::Query, "client_id"));
                }
            }
        }
    }

    fn client_id(place: ParameterIn, name: &str) -> utoipa::openapi::path::Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(place)
            .required(Required::False)
            .description(Some(
                "With an API key: the client identity to act as (stamped on what it \
                 writes). A token fixes its own and refuses another.",
            ))
            .schema(Some(String::schema()))
            .build()
    }
}
