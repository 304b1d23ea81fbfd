//! Who may call what. Every route declares the least role it needs in its table
//! ([`crate::openapi::endpoints`], [`crate::iceberg_rest::endpoints`], the console's); the
//! router wraps each with [`guard`]. The outer middleware ([`authenticate`]) only finds out
//! who the caller is: an unknown token is a 401 at once, no token is a caller with no role.
//!
//! Before that, [`browser_safety`] keeps web pages out: a `Host` that is not this server's
//! (DNS rebinding) is refused, and so is a POST that a page could send across sites without
//! asking first (a form, or `fetch` with a simple content type).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use std::sync::Arc;

use basin_catalog::Grants;
use basin_catalog::actor::{self, Actor};
use basin_service::Role;

use crate::state::AppState;

/// Who calls, found by [`authenticate`].
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// `None`: no token.
    pub role: Option<Role>,
    /// The token's name (`None` without one, and with `--no-auth`).
    pub token: Option<String>,
    /// The token's id (`oidc:SUBJECT` for a sign-in).
    pub token_id: Option<String>,
    /// What the token may read and write (`None`: everything, with `--no-auth`); the catalog
    /// applies them to every read and commit the request makes.
    pub grants: Option<Arc<Grants>>,
}

/// Wraps a route so that only callers with at least `role` reach it (`None`: anyone).
pub(crate) fn guard<S>(role: Option<Role>, route: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    match role {
        None => route,
        Some(needed) => route.route_layer(axum::middleware::from_fn(
            move |request: Request, next: Next| require(needed, request, next),
        )),
    }
}

/// 401 without a token, 403 when the token's role is below `needed`.
pub(crate) async fn require(needed: Role, request: Request, next: Next) -> Response {
    match refusal(needed, &request) {
        None => next.run(request).await,
        Some(refused) => refused,
    }
}

/// The 401 or 403 [`require`] answers, if any; for a handler that checks by itself (a path
/// only known at run time).
pub(crate) fn refusal(needed: Role, request: &Request) -> Option<Response> {
    match request.extensions().get::<Caller>().and_then(|c| c.role) {
        Some(role) if role >= needed => None,
        Some(role) => Some(refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "this token is a {}; {} {} needs a {}",
                role.as_str(),
                request.method(),
                request.uri().path(),
                needed.as_str()
            ),
            &format!(
                "use a token with that role (basin token create --role {})",
                needed.as_str()
            ),
        )),
        None => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "this server needs an access token",
            "send Authorization: Bearer TOKEN (create one with `basin token create --role reader`)",
        )),
    }
}

pub(crate) fn refuse(status: StatusCode, message: &str, hint: &str) -> Response {
    // Both Basin's error shape (`hint`, `kind`) and the Iceberg REST one (`type`, `code`).
    let kind = match status {
        StatusCode::FORBIDDEN => "ForbiddenException",
        StatusCode::UNAUTHORIZED => "NotAuthorizedException",
        _ => "BadRequestException",
    };
    let body = serde_json::json!({"error": {
        "message": message, "hint": hint,
        "kind": if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN { "Unauthorized" } else { "InvalidInput" },
        "type": kind, "code": status.as_u16(),
    }});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Finds the caller's role from `Authorization: Bearer TOKEN` (every role, with
/// `--no-auth`) and leaves it for [`require`].
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.open {
        let caller = Caller {
            role: Some(Role::Admin),
            token: None,
            token_id: None,
            grants: None,
        };
        return acting(&state, caller, request, next).await;
    }
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = match secret {
        // No token: only routes that need no role, and those read nothing of the data.
        None => Caller {
            role: None,
            token: None,
            token_id: None,
            grants: Some(Arc::new(Grants::default())),
        },
        Some(secret) => match state.lakehouse.tokens().authenticate(secret).await {
            Ok(Some(principal)) => {
                tracing::debug!(token = %principal.token.id, role = principal.role.as_str(), "authenticated");
                Caller {
                    role: Some(principal.role),
                    token_id: Some(principal.token.id),
                    token: Some(principal.token.name),
                    grants: Some(principal.grants),
                }
            }
            // An unknown token, or a sign-in token the issuer's keys and claims do not bear
            // out: a 401, recorded.
            Ok(None) => {
                let hint = "check the token, or create one with `basin token create`";
                return refuse_secret(&state, asked(&request), "unknown access token", hint).await;
            }
            Err(e) if e.kind() == basin_core::ErrorKind::InvalidInput => {
                let hint = e.hint.as_deref().unwrap_or("sign in again");
                return refuse_secret(&state, asked(&request), &e.message, hint).await;
            }
            Err(e) => {
                tracing::error!("cannot check a token: {e}");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the token cannot be checked now (the catalog store or the sign-in issuer failed)",
                    "try again; the server's log has the cause",
                );
            }
        },
    };
    acting(&state, caller, request, next).await
}

/// The 401 for a secret that names no principal (`request` says the method, path and door),
/// recorded in the audit log.
async fn refuse_secret(state: &AppState, request: Asked, message: &str, hint: &str) -> Response {
    let (action, door) = request;
    // Past `[server] audit_refusals_per_minute`, counted, not recorded (`crate::refusals`).
    if !state.refusals.recorded(&state.lakehouse, door).await {
        return refuse(StatusCode::UNAUTHORIZED, message, hint);
    }
    let record = state.lakehouse.audit();
    record
        .record_refused_secret(door, &action, "401", message)
        .await;
    refuse(StatusCode::UNAUTHORIZED, message, hint)
}

/// `METHOD /path` and the door of a request: what the audit log names it by (taken before
/// waiting, since a request's body is not `Sync`).
type Asked = (String, &'static str);

fn asked(request: &Request) -> Asked {
    (
        format!("{} {}", request.method(), request.uri().path()),
        door(request),
    )
}

/// The header with which an admin asks to write to protected branches directly; the commit
/// records the bypass (its clearance) and the admin.
pub(crate) const BYPASS_HEADER: &str = "x-basin-bypass-protection";

/// Runs the request as `caller`, through its door: the commits it makes name both
/// (`basin_catalog::actor`).
async fn acting(state: &AppState, caller: Caller, mut request: Request, next: Next) -> Response {
    let bypass = request.headers().contains_key(BYPASS_HEADER);
    if bypass && caller.role != Some(Role::Admin) {
        return refuse(
            StatusCode::FORBIDDEN,
            "only an admin token may bypass branch protection",
            "leave out the X-Basin-Bypass-Protection header, or use an admin token",
        );
    }
    let through = door(&request);
    let actor = Actor {
        principal: caller.token.clone(),
        token_id: caller.token_id.clone(),
        door: through,
        bypass_protection: bypass,
        grants: caller.grants.clone(),
    };
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    // A refusal of a caller with no token is a stranger's, whose flood the audit log counts
    // past its bound; a token's own refusals are always recorded, under its name.
    let stranger = caller.token_id.is_none();
    request.extensions_mut().insert(caller);
    let lakehouse = state.lakehouse.clone();
    actor::scope(actor, async move {
        let response = next.run(request).await;
        let status = response.status();
        let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
        if crate::api::audit::audited(&method, &path, status)
            && !(refused && stranger && !state.refusals.recorded(&state.lakehouse, through).await)
        {
            let outcome = status.as_u16().to_string();
            let action = format!("{method} {path}");
            lakehouse.audit().record(&action, "", &outcome, "").await;
        }
        response
    })
    .await
}

/// The door a request came through, as a commit records it.
fn door(request: &Request) -> &'static str {
    if request.uri().path().starts_with("/v1/") {
        return "iceberg-rest";
    }
    if request.uri().path() == "/mcp" {
        return "mcp";
    }
    match request
        .headers()
        .get("x-basin-client")
        .map(|v| v.as_bytes())
    {
        Some(b"console") => "console",
        _ => "api",
    }
}

/// Refuses requests a web page could make this server act on: a foreign `Host` (a page
/// whose name was re-pointed at this address), and a POST a page can send across sites
/// without the browser asking first (a missing or simple content type and no custom header).
pub(crate) async fn browser_safety(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if let Some(host) = host
        && !state.hosts.allows(host)
    {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("this server does not answer to the name `{host}`"),
            "reach it by its address, or add the name to `[server] allowed_hosts` in basin.toml",
        );
    }
    if request.method() == Method::POST && !deliberate(&request) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "POST {} needs a content type of its own: a web page could send this one \
                 from another site",
                request.uri().path()
            ),
            "send `Content-Type: application/json` (or the file's type for an import), or the \
             header `X-Basin-Client: NAME`",
        );
    }
    next.run(request).await
}

/// A POST a browser would only send cross-site after a CORS preflight (which Basin never
/// grants): a non-simple content type, or a custom header.
fn deliberate(request: &Request) -> bool {
    if request.headers().contains_key("x-basin-client") {
        return true;
    }
    let Some(content_type) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    !matches!(
        essence.as_str(),
        "" | "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
    )
}
