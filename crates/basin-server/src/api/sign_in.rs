//! The console's sign-in with `[auth.oidc]`'s issuer (authorization code with PKCE): what it
//! needs to send a person to the issuer, and the exchange of the code it brings back for a
//! token Basin accepts. Neither needs a token: they are how one is got.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::state::AppState;

/// `GET /api/v1/auth/config`: `{sign_in: {client_id, authorization_url, token_url, scopes}}`,
/// or `{sign_in: null}` when the console signs in only by pasting a token.
pub(crate) async fn config(State(state): State<AppState>) -> Response {
    Json(json!({ "sign_in": state.lakehouse.tokens().console_sign_in() })).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Code {
    code: String,
    code_verifier: String,
    redirect_uri: String,
}

/// `POST /api/v1/auth/sign-in`: the issuer's token for the code, verified as every door
/// verifies one: `{token, subject, expires_at_ms}`.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Json(code): Json<Code>,
) -> Result<Response, ApiError> {
    let tokens = state.lakehouse.tokens();
    let signed = tokens
        .sign_in(&code.code, &code.code_verifier, &code.redirect_uri)
        .await?;
    Ok(Json(signed).into_response())
}
