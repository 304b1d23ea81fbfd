//! The HTTP application: every door's routes merged ([`crate::openapi`] for the HTTP API,
//! [`crate::iceberg_rest`], [`crate::console`], declared function paths), behind the
//! middleware every request passes.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use basin_service::Lakehouse;
use basin_service::dispatch::Dispatcher;
use tracing::Instrument;

use crate::state::AppState;
use crate::{auth, console, http, iceberg_rest, openapi, rejections, triggers};

/// The HTTP application (routes and middleware), for `serve` and for tests. With `open`,
/// requests need no token; `listen` is the address `Host` headers must name.
pub fn app(lakehouse: Lakehouse, open: bool, listen: Option<SocketAddr>) -> Router {
    let dispatcher = Dispatcher::new(lakehouse.clone());
    router(AppState::new(lakehouse, open, listen, dispatcher))
}

pub(crate) fn router(state: AppState) -> Router {
    let routes = openapi::routes()
        .merge(iceberg_rest::routes())
        .merge(console::routes())
        .fallback(triggers::call_declared);
    layered(routes, state)
}

/// `routes` behind the middleware every request passes: time limit, tokens, browser
/// safety, JSON errors, request context.
pub(crate) fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::reserved_only,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::browser_safety,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rejections::json_errors,
        ))
        // What JSON extractors read whole; function calls read their body with the same limit.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_size,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// Gives each request an id (in the response and in every log line of the request) and
/// counts it for /metrics.
async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(basin_core::ids::ordered);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    span.in_scope(|| tracing::info!(status, ms = seconds * 1000.0, "done"));
    // Labels from fixed lists only: any caller, before its token is checked, could
    // otherwise make a new series per request (a method of any name, any path).
    let method_label = match method {
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD => method.as_str(),
        _ => "other",
    };
    state
        .metrics
        .request(method_label, &route_label(&path), status, seconds);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value);
    }
    // A browser takes each answer as the type it says it is (no JSON or CSV run as a script).
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The route a path belongs to, for metrics (bounded labels, never raw paths).
fn route_label(path: &str) -> String {
    if path.starts_with("/v1/") {
        return iceberg_rest::route_label(path);
    }
    if console::is_asset(path) {
        return "/console".to_string();
    }
    let matches = |template: &str| {
        let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
    };
    static PATHS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| openapi::endpoints().into_iter().map(|e| e.path).collect());
    PATHS
        .iter()
        .find(|p| matches(p))
        .map_or("other", |p| p)
        .to_string()
}
