//! The server as an outside caller meets it: every route x method x role, and the browser
//! walls, through the real router (no network).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use basin_service::{Lakehouse, Role};
use tower::ServiceExt;

mod access;
mod console;
mod errors;
mod grants;
mod mcp;
mod protection;
mod queries;
mod result_cache;

const HOST: &str = "127.0.0.1:8181";

struct Server {
    dir: tempfile::TempDir,
    app: Router,
    lakehouse: Lakehouse,
    /// A secret per role.
    tokens: Vec<(Role, String)>,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let lakehouse = Lakehouse::init(dir.path(), &basin_service::Placement::default())
        .await
        .expect("init");
    let mut tokens = Vec::new();
    for role in [Role::Reader, Role::Writer, Role::Admin] {
        let (_, secret) = lakehouse
            .tokens()
            .create(role.as_str(), Some(role), &[])
            .await
            .expect("token");
        tokens.push((role, secret));
    }
    let app = crate::app(
        lakehouse.clone(),
        false,
        Some(HOST.parse().expect("address")),
    );
    Server {
        dir,
        app,
        lakehouse,
        tokens,
    }
}

impl Server {
    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let (status, _, body) = self.respond(request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The whole answer: status, headers and body.
    async fn respond(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
        let response = self.app.clone().oneshot(request).await.expect("answer");
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, headers, body)
    }

    fn secret(&self, role: Role) -> &str {
        &self
            .tokens
            .iter()
            .find(|(r, _)| *r == role)
            .expect("role")
            .1
    }
}

/// A request as a well-behaved client sends it: JSON body on POST, this server's Host.
fn request(method: &Method, path: &str, secret: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(secret) = secret {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {secret}"));
    }
    let body = if *method == Method::POST {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    builder.body(body).expect("request")
}

/// `POST path` with a JSON body.
fn post(secret: &str, path: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// `POST /api/v1/query` of `sql` with a JSON answer.
fn query(secret: &str, sql: &str) -> Request<Body> {
    post(secret, "/api/v1/query", serde_json::json!({ "sql": sql }))
}

/// Every route the server has, with the least role it declares.
fn routes() -> Vec<(Method, String, Option<Role>)> {
    let fill = |path: &str| {
        path.replace("{name}", "sales.orders")
            .replace("{id}", "0190")
            .replace("{prefix}", "main")
            .replace("{namespace}", "sales")
            .replace("{table}", "orders")
    };
    let mut all: Vec<_> = crate::openapi::endpoints()
        .into_iter()
        .map(|e| (e.method, fill(e.path), e.role))
        .collect();
    all.extend(
        crate::iceberg_rest::endpoints()
            .into_iter()
            .map(|e| (e.method, fill(e.path), Some(e.role))),
    );
    for (asset, _, _) in crate::console::ASSETS {
        all.push((Method::GET, asset.to_string(), None));
    }
    // A path a function may declare (found at run time): writers call functions.
    all.push((
        Method::POST,
        "/hooks/orders".to_string(),
        Some(Role::Writer),
    ));
    all
}
