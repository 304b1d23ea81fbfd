//! Grants at the doors: a token sees only the tables its grants let it read (listings, SQL,
//! information_schema, Iceberg REST), and writes only where they let it write.

use basin_catalog::Grant;

use super::*;

/// A server whose `main` holds `sales.orders` and `hr.salaries`, with tokens `ana`
/// (read sales.*) and `bo` (read sales.*, write sandbox.* on dev/*); their secrets.
pub(super) async fn granted() -> (Server, String, String) {
    let server = server().await;
    for (table, csv) in [
        ("sales.orders", "id,amount\n1,10\n2,3\n"),
        ("hr.salaries", "id,salary\n1,100\n"),
    ] {
        import_csv(&server, table, csv).await.expect("import");
    }
    let ana = token(&server, "ana", &["read:sales.*"]).await;
    let bo = token(&server, "bo", &["read:sales.*", "write:sandbox.*@dev/*"]).await;
    (server, ana, bo)
}

/// Imports `csv` into `table` on `main`, as whoever acts.
pub(super) async fn import_csv(server: &Server, table: &str, csv: &str) -> basin_core::Result<()> {
    let file = server.dir.path().join(format!("{table}.csv"));
    std::fs::write(&file, csv).expect("write");
    let request = basin_ingest::ImportRequest::new(vec![file.display().to_string()], table, "main");
    server.lakehouse.import(request, None).await.map(drop)
}

/// A token named `name` holding `grants`; its secret.
async fn token(server: &Server, name: &str, grants: &[&str]) -> String {
    let grants: Vec<Grant> = grants
        .iter()
        .map(|g| Grant::parse(g).expect("grant"))
        .collect();
    let created = server.lakehouse.tokens().create(name, None, &grants).await;
    created.expect("token").1
}

/// `table`'s metadata location on `main`.
async fn location_on_main(server: &Server, table: &str) -> String {
    let catalog = server.lakehouse.catalog();
    let main = catalog.resolve("main").await.expect("main");
    let key = basin_catalog::Key::parse(table).expect("key");
    catalog.table_location(&main, &key).await.expect("location")
}

fn upload(secret: &str, table: &str, branch: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!(
            "/api/v1/tables/{table}/import?filename=rows.csv&branch={branch}"
        ))
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "text/csv")
        .header("x-basin-client", "test")
        .body(Body::from("id,amount\n9,1\n"))
        .expect("request")
}

#[tokio::test]
async fn a_token_sees_only_what_its_grants_let_it_read() {
    let (server, ana, _) = granted().await;
    let get = |path: &str| server.send(request(&Method::GET, path, Some(&ana)));
    let (status, body) = get("/api/v1/tables").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("sales.orders") && !body.contains("hr"),
        "{body}"
    );
    let (status, body) = get("/v1/main/namespaces").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("sales") && !body.contains("hr"), "{body}");
    let (status, body) = get("/v1/main/namespaces/hr/tables/salaries").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get("/api/v1/tables/hr.salaries").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = server
        .send(query(&ana, "SELECT count(*) AS n FROM sales.orders"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.send(query(&ana, "SELECT * FROM hr.salaries")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.contains("did you mean `hr"), "{body}");
    let (status, body) = server
        .send(query(
            &ana,
            "SELECT table_schema, table_name FROM information_schema.tables",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("orders") && !body.contains("salaries"),
        "{body}"
    );

    // The admin still sees everything.
    let (_, body) = server
        .send(request(
            &Method::GET,
            "/api/v1/tables",
            Some(server.secret(Role::Admin)),
        ))
        .await;
    assert!(body.contains("hr.salaries"), "{body}");
}

#[tokio::test]
async fn a_token_writes_only_where_its_grants_let_it() {
    let (server, ana, bo) = granted().await;
    // ana reads only: the write routes are closed to her.
    let (status, body) = server.send(upload(&ana, "sales.orders", "main")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // bo writes sandbox.* on dev/* only.
    let (status, body) = server
        .send(post(
            &bo,
            "/api/v1/branches",
            serde_json::json!({"name": "dev/bo"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .send(post(
            &bo,
            "/api/v1/branches",
            serde_json::json!({"name": "release"}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = server.send(upload(&bo, "sandbox.scratch", "dev/bo")).await;
    assert!(status.is_success(), "{body}");
    let (status, body) = server.send(upload(&bo, "sales.orders", "dev/bo")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("`bo` may not write `sales.orders`"), "{body}");
    let (status, body) = server.send(upload(&bo, "sandbox.scratch", "main")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let log = server
        .lakehouse
        .refs()
        .log(Some("dev/bo"), 1)
        .await
        .expect("log");
    assert_eq!(log[0].author, "bo");
    assert_eq!(
        log[0].changed,
        ["sandbox", "sandbox.scratch"],
        "the namespace came with it"
    );
}

#[tokio::test]
async fn a_token_cannot_name_another_tables_files_through_iceberg_rest() {
    let (server, _, _) = granted().await;
    let cy = token(&server, "cy", &["write:sandbox.*"]).await;
    let salaries = location_on_main(&server, "hr.salaries").await;
    // Registering hr.salaries' metadata as a sandbox table would let cy read its rows.
    let (status, body) = server
        .send(post(
            &cy,
            "/v1/main/namespaces/sandbox/register",
            serde_json::json!({"name": "copy", "metadata-location": salaries}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        // cy may not read hr.salaries: its folder is no table's it may see (nor named to it).
        body.contains("is not in the folder of a table this token may see")
            && !body.contains("`hr.salaries`"),
        "{body}"
    );
    let tables = server.lakehouse.tables().list(Some("main")).await;
    assert!(
        !tables
            .expect("tables")
            .iter()
            .any(|t| t.table == "sandbox.copy")
    );
}

/// What the dispatcher runs a deployed function's batch as (`DeployedFunction::actor`): its
/// writes go only where its deployer's grants allow.
#[tokio::test]
async fn a_deployed_function_writes_with_its_deployers_grants() {
    let (server, _, _) = granted().await;
    let deployed = |deployed_by: serde_json::Value| {
        let record = serde_json::json!({
            "name": "copy", "file": "copy.py", "source": "", "env_hash": "", "version": "v1",
            "deployed_at_ms": 0, "deployed_by": deployed_by,
            "declaration": {"function": "copy", "file": "copy.py", "line": 1},
        });
        serde_json::from_value::<basin_service::deployed::DeployedFunction>(record).expect("record")
    };
    let by_cy = deployed(serde_json::json!({
        "principal": "cy",
        "grants": {"grants": [Grant::parse("write:sandbox.*").expect("grant")]},
    }));
    let write = |table| import_csv(&server, table, "id,amount\n9,1\n");
    let refused = basin_catalog::actor::scope(by_cy.actor(), write("sales.orders"))
        .await
        .expect_err("cy may not write sales.orders");
    assert_eq!(refused.kind(), basin_core::ErrorKind::Forbidden);
    assert!(
        refused
            .message
            .starts_with("`function:copy` may not write `sales"),
        "{refused}"
    );
    basin_catalog::actor::scope(by_cy.actor(), write("sandbox.copies"))
        .await
        .expect("cy may write sandbox.*");
    let log = server
        .lakehouse
        .refs()
        .log(Some("main"), 1)
        .await
        .expect("log");
    assert_eq!(
        (log[0].author.as_str(), log[0].door.as_deref()),
        ("function:copy", Some("function"))
    );
    // A function deployed before Basin recorded deployers acts as the local user did.
    let unrecorded = deployed(serde_json::Value::Null);
    basin_catalog::actor::scope(unrecorded.actor(), write("sales.orders"))
        .await
        .expect("everything");
}

/// A renamed table keeps its folder, named for its old name: a grant on the old name must not
/// reach the files, nor the new name's grant be needed through another table.
#[tokio::test]
async fn a_renamed_tables_files_follow_the_table_not_its_folders_name() {
    let (server, _, _) = granted().await;
    let cy = token(&server, "cy", &["write:sandbox.*"]).await;
    // sandbox.drafts becomes hr.pay: its folder still says sandbox/drafts-UUID.
    import_csv(&server, "sandbox.drafts", "id,salary\n1,100\n")
        .await
        .expect("import");
    let tables = server.lakehouse.tables();
    tables
        .rename("sandbox.drafts", "hr.pay", Some("main"))
        .await
        .expect("rename");
    let pay = location_on_main(&server, "hr.pay").await;
    assert!(pay.contains("/sandbox/drafts-"), "{pay}");
    // The folder's name names no table now, so cy's write:sandbox.* does not reach hr.pay.
    assert_eq!(tables.folder_owner(&pay).await.expect("owner"), None);
    let (status, body) = server
        .send(post(
            &cy,
            "/v1/main/namespaces/sandbox/register",
            serde_json::json!({"name": "copy", "metadata-location": pay}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A second token may not take a name in use.
    let again = server
        .lakehouse
        .tokens()
        .create("cy", None, &[Grant::parse("read:*").expect("grant")])
        .await
        .expect_err("a second cy");
    assert_eq!(again.kind(), basin_core::ErrorKind::AlreadyExists);
}
