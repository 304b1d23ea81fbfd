//! Protected branches at the doors: the HTTP API and Iceberg REST refuse direct writes to
//! `main` with their own codes, a commit names the token and door it came through, and only
//! an admin may bypass.

use super::*;

/// A server whose lakehouse protects `main`, with a `dev` branch.
async fn protected() -> Server {
    let mut server = server().await;
    std::fs::write(
        server.dir.path().join("basin.toml"),
        "[[branches.protect]]\npattern = \"main\"\n",
    )
    .expect("basin.toml");
    let lakehouse = Lakehouse::open(Some(server.dir.path()), server.dir.path())
        .await
        .expect("open");
    lakehouse
        .refs()
        .create_branch("dev", None)
        .await
        .expect("dev");
    server.app = crate::app(
        lakehouse.clone(),
        false,
        Some(HOST.parse().expect("address")),
    );
    server.lakehouse = lakehouse;
    server
}

#[tokio::test]
async fn direct_writes_to_a_protected_branch_are_refused_at_every_door() {
    let server = protected().await;
    let writer = server.secret(Role::Writer);
    let (status, body) = server
        .send(post(
            writer,
            "/api/v1/namespaces",
            serde_json::json!({"name": "sales"}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("\"kind\":\"Forbidden\"") && body.contains("protected"),
        "{body}"
    );
    let (status, body) = server
        .send(post(
            writer,
            "/v1/main/namespaces",
            serde_json::json!({"namespace": ["sales"]}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("ForbiddenException"), "{body}");
    let log = server
        .lakehouse
        .refs()
        .log(Some("main"), 10)
        .await
        .expect("log");
    assert_eq!(log.len(), 1, "only the first commit: {log:?}");
}

#[tokio::test]
async fn a_commit_names_the_token_and_the_door() {
    let server = protected().await;
    let writer = server.secret(Role::Writer);
    let body = serde_json::json!({"name": "sales", "branch": "dev"});
    let (status, answer) = server.send(post(writer, "/api/v1/namespaces", body)).await;
    assert!(status.is_success(), "{answer}");
    let (status, answer) = server
        .send(post(
            writer,
            "/v1/dev/namespaces",
            serde_json::json!({"namespace": ["ops"]}),
        ))
        .await;
    assert!(status.is_success(), "{answer}");
    let log = server
        .lakehouse
        .refs()
        .log(Some("dev"), 2)
        .await
        .expect("log");
    let seen: Vec<(&str, Option<&str>)> = log
        .iter()
        .map(|c| (c.author.as_str(), c.door.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [("writer", Some("iceberg-rest")), ("writer", Some("api"))]
    );
}

#[tokio::test]
async fn only_an_admin_bypasses_protection_and_the_commit_says_so() {
    let server = protected().await;
    let bypass = |secret: &str| {
        let mut request = post(
            secret,
            "/api/v1/namespaces",
            serde_json::json!({"name": "sales"}),
        );
        request
            .headers_mut()
            .insert(crate::auth::BYPASS_HEADER, "1".parse().expect("header"));
        request
    };
    let (status, body) = server.send(bypass(server.secret(Role::Writer))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = server.send(bypass(server.secret(Role::Admin))).await;
    assert!(status.is_success(), "{body}");
    let log = server
        .lakehouse
        .refs()
        .log(Some("main"), 1)
        .await
        .expect("log");
    assert_eq!(log[0].author, "admin");
    assert_eq!(log[0].door.as_deref(), Some("api"));
}
