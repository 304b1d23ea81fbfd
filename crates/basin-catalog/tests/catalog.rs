//! The catalog's behaviour suite: every test runs against the SQLite store and against a
//! real Postgres (`sqlite::NAME`, `postgres::NAME`; see `catalog/stores.rs`).

use basin_catalog::{Catalog, Change, CommitRequest, Content, Key, Operation, RefKind, Resolved};
use basin_core::ErrorKind;

#[macro_use]
#[path = "catalog/stores.rs"]
mod stores;
#[path = "catalog/events.rs"]
mod events;
#[path = "catalog/history.rs"]
mod history;
#[path = "catalog/pg.rs"]
mod pg;
#[path = "catalog/postgres.rs"]
mod postgres_only;
#[path = "catalog/protection.rs"]
mod protection;
#[path = "catalog/records.rs"]
mod records;

use stores::Fixture;

every_store!(
    new_lakehouse_has_main_and_initialize_is_idempotent,
    two_nodes_initializing_at_once_make_one_main,
    branch_sees_parent_tables_and_diverges_without_touching_it,
    main_and_the_current_branch_cannot_be_deleted,
    unknown_ref_suggests_and_lists_branches,
    duplicate_and_invalid_ref_names_are_refused,
    tags_and_commit_refs_are_read_only_and_time_travel,
    commit_prefix_outside_the_refs_history_is_refused,
    stale_commit_rebases_when_its_tables_did_not_change,
    namespaces_guard_their_tables,
    merge_is_three_way_at_table_level,
    merge_commit_makes_source_an_ancestor,
    concurrent_writers_on_one_branch_lose_no_update,
    branch_of_a_thousand_tables_shares_them,
);

fn key(s: &str) -> Key {
    Key::parse(s).unwrap()
}

fn put(k: &str, content: Content) -> Operation {
    Operation::Put {
        key: key(k),
        content,
    }
}

/// Commits `ops` on `branch` at its current head.
async fn commit(
    catalog: &Catalog,
    branch: &str,
    ops: Vec<Operation>,
) -> basin_core::Result<basin_catalog::Commit> {
    let head = catalog.resolve(branch).await?.commit;
    catalog
        .commit(CommitRequest::new(branch, head, "test").with_operations(ops))
        .await
}

async fn table_at(catalog: &Catalog, r: &str, k: &str) -> Option<Content> {
    let resolved = catalog.resolve(r).await.unwrap();
    catalog.content(&resolved, &key(k)).await.unwrap()
}

async fn new_lakehouse_has_main_and_initialize_is_idempotent(fixture: Fixture) {
    let store = fixture.node().await;
    store.initialize().await.unwrap();
    let head = store.get_ref("main").await.unwrap().unwrap().head;
    store.initialize().await.unwrap();
    assert_eq!(store.get_ref("main").await.unwrap().unwrap().head, head);
    assert_eq!(store.list_refs().await.unwrap().len(), 1);
}

/// Two nodes starting on a new catalog at once: one schema, one root commit, one `main`.
async fn two_nodes_initializing_at_once_make_one_main(fixture: Fixture) {
    let (a, b) = (fixture.node().await, fixture.node().await);
    let (first, second) = tokio::join!(a.initialize(), b.initialize());
    first.unwrap();
    second.unwrap();
    let refs = a.list_refs().await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(b.log(&refs[0].head, 10).await.unwrap().len(), 1);
}

async fn branch_sees_parent_tables_and_diverges_without_touching_it(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    commit(
        &catalog,
        "main",
        vec![
            put("sales", Content::namespace()),
            put("sales.orders", Content::table("m1")),
        ],
    )
    .await
    .unwrap();
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    assert_eq!(
        table_at(&catalog, "dev", "sales.orders").await,
        Some(Content::table("m1"))
    );

    commit(
        &catalog,
        "dev",
        vec![put("sales.orders", Content::table("m2"))],
    )
    .await
    .unwrap();
    assert_eq!(
        table_at(&catalog, "dev", "sales.orders").await,
        Some(Content::table("m2"))
    );
    assert_eq!(
        table_at(&catalog, "main", "sales.orders").await,
        Some(Content::table("m1"))
    );

    let diff = catalog
        .diff(&main, &catalog.resolve("dev").await.unwrap())
        .await
        .unwrap();
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].change, Change::Changed);
}

async fn main_and_the_current_branch_cannot_be_deleted(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    assert_eq!(
        catalog
            .delete_branch("main", None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        catalog
            .delete_branch("dev", Some("dev"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    catalog.delete_branch("dev", Some("main")).await.unwrap();
    assert_eq!(
        catalog.resolve("dev").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn unknown_ref_suggests_and_lists_branches(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let err = catalog.resolve("mian").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let hint = err.hint.unwrap();
    assert!(hint.contains("`main`"), "{hint}");
    assert!(hint.contains("branches: main"), "{hint}");
}

async fn duplicate_and_invalid_ref_names_are_refused(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_tag("v1", &main).await.unwrap();
    assert_eq!(
        catalog.create_branch("v1", &main).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        catalog
            .create_branch("a..b", &main)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        catalog
            .create_branch("x@y", &main)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    catalog.create_branch("run/42", &main).await.unwrap();
}

async fn tags_and_commit_refs_are_read_only_and_time_travel(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let first = commit(
        &catalog,
        "main",
        vec![
            put("a", Content::namespace()),
            put("a.t", Content::table("m1")),
        ],
    )
    .await
    .unwrap();
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_tag("v1", &main).await.unwrap();
    commit(&catalog, "main", vec![put("a.t", Content::table("m2"))])
        .await
        .unwrap();

    assert_eq!(
        table_at(&catalog, "v1", "a.t").await,
        Some(Content::table("m1"))
    );
    let at = format!("main@{}", &first.id.as_str()[..8]);
    assert_eq!(
        table_at(&catalog, &at, "a.t").await,
        Some(Content::table("m1"))
    );
    assert_eq!(
        table_at(&catalog, "main", "a.t").await,
        Some(Content::table("m2"))
    );

    let tag = catalog.resolve("v1").await.unwrap();
    assert_eq!(
        tag.writable_branch().unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let err = catalog
        .commit(CommitRequest::new("v1", tag.commit.clone(), "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

async fn commit_prefix_outside_the_refs_history_is_refused(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    let on_dev = commit(&catalog, "dev", vec![put("a", Content::namespace())])
        .await
        .unwrap();
    let spec = format!("main@{}", on_dev.id.short());
    assert_eq!(
        catalog.resolve(&spec).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let ok = catalog
        .resolve(&format!("dev@{}", on_dev.id.short()))
        .await
        .unwrap();
    assert_eq!(ok.commit, on_dev.id);
    assert_eq!(
        catalog.resolve("main@zz").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

async fn stale_commit_rebases_when_its_tables_did_not_change(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    commit(&catalog, "main", vec![put("a", Content::namespace())])
        .await
        .unwrap();
    let stale = catalog.resolve("main").await.unwrap().commit;
    commit(&catalog, "main", vec![put("a.x", Content::table("x1"))])
        .await
        .unwrap();

    // Another writer read `stale` and touches a different table: re-based, both kept.
    catalog
        .commit(
            CommitRequest::new("main", stale.clone(), "y")
                .with_operations([put("a.y", Content::table("y1"))]),
        )
        .await
        .unwrap();
    assert_eq!(
        table_at(&catalog, "main", "a.x").await,
        Some(Content::table("x1"))
    );
    assert_eq!(
        table_at(&catalog, "main", "a.y").await,
        Some(Content::table("y1"))
    );

    // A writer that read `stale` and touches `a.x`, which changed since: a conflict naming it.
    let err = catalog
        .commit(
            CommitRequest::new("main", stale, "x")
                .with_operations([put("a.x", Content::table("x2"))]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message.contains("a.x"), "{}", err.message);
    assert_eq!(
        table_at(&catalog, "main", "a.x").await,
        Some(Content::table("x1"))
    );
}

async fn namespaces_guard_their_tables(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let err = commit(&catalog, "main", vec![put("nope.t", Content::table("m"))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    commit(
        &catalog,
        "main",
        vec![
            put("a", Content::namespace()),
            put("a.t", Content::table("m")),
        ],
    )
    .await
    .unwrap();
    let err = commit(&catalog, "main", vec![Operation::Delete { key: key("a") }])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    commit(
        &catalog,
        "main",
        vec![
            Operation::Delete { key: key("a.t") },
            Operation::Delete { key: key("a") },
        ],
    )
    .await
    .unwrap();
    assert!(
        catalog
            .contents(&catalog.resolve("main").await.unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn merge_is_three_way_at_table_level(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    commit(
        &catalog,
        "main",
        vec![
            put("a", Content::namespace()),
            put("a.both", Content::table("b0")),
            put("a.same", Content::table("s0")),
            put("a.src", Content::table("r0")),
            put("a.gone", Content::table("g0")),
        ],
    )
    .await
    .unwrap();
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    commit(
        &catalog,
        "dev",
        vec![
            put("a.both", Content::table("b-dev")),
            put("a.same", Content::table("s1")),
            put("a.src", Content::table("r1")),
            put("a.new", Content::table("n1")),
            Operation::Delete { key: key("a.gone") },
        ],
    )
    .await
    .unwrap();
    commit(
        &catalog,
        "main",
        vec![
            put("a.both", Content::table("b-main")),
            put("a.same", Content::table("s1")),
        ],
    )
    .await
    .unwrap();

    let dev = catalog.resolve("dev").await.unwrap();
    let plan = catalog.plan_merge(&dev, "main").await.unwrap();
    let conflicts: Vec<&str> = plan.conflicts.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(conflicts, vec!["a.both"]);
    let mut touched: Vec<&str> = plan
        .operations
        .iter()
        .map(|(o, _)| o.key().as_str())
        .collect();
    touched.sort();
    assert_eq!(touched, vec!["a.gone", "a.new", "a.src"]);
}

async fn merge_commit_makes_source_an_ancestor(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    commit(&catalog, "dev", vec![put("a", Content::namespace())])
        .await
        .unwrap();
    let dev = catalog.resolve("dev").await.unwrap();
    let plan = catalog.plan_merge(&dev, "main").await.unwrap();
    let mut request = CommitRequest::new("main", plan.target_head.clone(), "merge dev")
        .with_operations(plan.operations.into_iter().map(|(op, _)| op));
    request.merge_parent = Some(dev.commit.clone());
    catalog.commit(request).await.unwrap();
    // Merging again is a no-op: the merge base is now dev's head.
    let again = catalog.plan_merge(&dev, "main").await.unwrap();
    assert_eq!(again.base, dev.commit);
    assert!(again.is_noop());
}

async fn concurrent_writers_on_one_branch_lose_no_update(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    commit(&catalog, "main", vec![put("a", Content::namespace())])
        .await
        .unwrap();

    // Two nodes (separate stores: for SQLite two pools over one file, for Postgres two
    // pools on one database), eight writers on each, all reading main before committing.
    let nodes = [
        Catalog::new(fixture.node().await),
        Catalog::new(fixture.node().await),
    ];
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let catalog = nodes[i % 2].clone();
        writers.spawn(async move {
            let head = catalog.resolve("main").await.unwrap().commit;
            tokio::task::yield_now().await;
            catalog
                .commit(
                    CommitRequest::new("main", head, format!("t{i}")).with_operations([put(
                        &format!("a.t{i}"),
                        Content::table(format!("m{i}")),
                    )]),
                )
                .await
                .unwrap();
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let contents = catalog
        .contents(&catalog.resolve("main").await.unwrap())
        .await
        .unwrap();
    assert_eq!(contents.values().filter(|c| c.is_table()).count(), 16);
    let log = catalog
        .log(&catalog.resolve("main").await.unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(
        log.len(),
        16 + 2,
        "16 commits, the namespace commit and the root"
    );
}

async fn branch_of_a_thousand_tables_shares_them(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let mut ops = vec![put("big", Content::namespace())];
    ops.extend((0..1000).map(|i| put(&format!("big.t{i}"), Content::table(format!("m{i}")))));
    commit(&catalog, "main", ops).await.unwrap();
    let main = catalog.resolve("main").await.unwrap();
    let dev = catalog.create_branch("dev", &main).await.unwrap();
    assert_eq!(dev.kind, RefKind::Branch);
    let on_dev = catalog
        .contents(&Resolved {
            spec: "dev".into(),
            branch: Some("dev".into()),
            commit: dev.head,
        })
        .await
        .unwrap();
    assert_eq!(on_dev.len(), 1001);
}
