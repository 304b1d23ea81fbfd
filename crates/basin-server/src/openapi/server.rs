//! The server itself: health, metrics, who calls, and how the console signs in.

use axum::http::Method;
use axum::routing::{get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::api;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/healthz",
            role: None,
            summary: "200 `ok` while the server runs",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(|| async { "ok\n" }),
        },
        Endpoint {
            method: Method::GET,
            path: "/metrics",
            role: reader,
            summary: "Prometheus metrics: requests by route and status, queries, rows, time",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::metrics),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/whoami",
            role: reader,
            summary: "The caller: {role, token} (the token's name; null with --no-auth)",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::whoami),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/auth/config",
            role: None,
            summary: "How the console signs in: {sign_in: {client_id, authorization_url, \
                  token_url, scopes}} with [auth.oidc]'s client_id, else {sign_in: null}",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::sign_in::config),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/auth/sign-in",
            role: None,
            summary: "Trade an authorization code (from the issuer's redirect, with the PKCE \
                  code verifier) at the issuer's token endpoint for a token Basin accepts: \
                  {token, subject, expires_at_ms}. Recorded in the audit log",
            query: &[],
            body: &[
                ("code", "string", "the code the issuer sent back"),
                (
                    "code_verifier",
                    "string",
                    "the PKCE verifier of the code's challenge",
                ),
                (
                    "redirect_uri",
                    "string",
                    "the redirect_uri the code was asked with",
                ),
            ],
            errors: &[
                (
                    400,
                    "the issuer did not take the code, or its token does not verify",
                ),
                (404, "no sign-in configured"),
            ],
            handler: || post(api::sign_in::sign_in),
        },
    ]
}
