//! The web console at `/`: a SQL editor beside the tables and their columns, query history
//! and downloads, tables, commits with their changes, reviews, functions, events, runs and usage,
//! over the HTTP API. Its files are compiled into the binary; the page loads nothing from
//! elsewhere (its Content-Security-Policy says so to the browser too).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The console's files: path, media type, content. `console.js` (the shared helpers) loads
/// first; each other script adds its panels.
pub(crate) const ASSETS: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../console/index.html")),
    (
        "/console/console.css",
        CSS,
        include_str!("../console/console.css"),
    ),
    (
        "/console/console.js",
        JS,
        include_str!("../console/console.js"),
    ),
    ("/console/chart.js", JS, include_str!("../console/chart.js")),
    ("/console/query.js", JS, include_str!("../console/query.js")),
    ("/console/graph.js", JS, include_str!("../console/graph.js")),
    (
        "/console/lineage.js",
        JS,
        include_str!("../console/lineage.js"),
    ),
    (
        "/console/rundag.js",
        JS,
        include_str!("../console/rundag.js"),
    ),
    (
        "/console/history.js",
        JS,
        include_str!("../console/history.js"),
    ),
    (
        "/console/tables.js",
        JS,
        include_str!("../console/tables.js"),
    ),
    (
        "/console/functions.js",
        JS,
        include_str!("../console/functions.js"),
    ),
    (
        "/console/activity.js",
        JS,
        include_str!("../console/activity.js"),
    ),
    (
        "/console/reviews.js",
        JS,
        include_str!("../console/reviews.js"),
    ),
];

/// Only this server's own scripts, styles and API.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Whether a path is one of the console's files, which need no token (the page asks for one).
pub(crate) fn is_asset(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}
