//! Behaviour of the versioned catalog against the SQLite store (in memory and on disk).

use std::sync::Arc;

use basin_catalog::{
    Catalog, Change, CommitRequest, Content, ErrorKind, Key, Operation, RefKind, Resolved,
    SqlStore, Store,
};

#[path = "catalog/history.rs"]
mod history;

async fn memory_catalog() -> Catalog {
    let store = SqlStore::memory().await.unwrap();
    store.initialize().await.unwrap();
    Catalog::new(Arc::new(store))
}

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
) -> basin_catalog::Result<basin_catalog::Commit> {
    let head = catalog.resolve(branch).await?.commit;
    catalog
        .commit(CommitRequest::new(branch, head, "test").with_operations(ops))
        .await
}

async fn table_at(catalog: &Catalog, r: &str, k: &str) -> Option<Content> {
    let resolved = catalog.resolve(r).await.unwrap();
    catalog.content(&resolved, &key(k)).await.unwrap()
}

#[tokio::test]
async fn new_lakehouse_has_main_and_initialize_is_idempotent() {
    let store = SqlStore::memory().await.unwrap();
    store.initialize().await.unwrap();
    let head = store.get_ref("main").await.unwrap().unwrap().head;
    store.initialize().await.unwrap();
    assert_eq!(store.get_ref("main").await.unwrap().unwrap().head, head);
    assert_eq!(store.list_refs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn branch_sees_parent_tables_and_diverges_without_touching_it() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn main_and_the_current_branch_cannot_be_deleted() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn unknown_ref_suggests_and_lists_branches() {
    let catalog = memory_catalog().await;
    let err = catalog.resolve("mian").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let hint = err.hint.unwrap();
    assert!(hint.contains("`main`"), "{hint}");
    assert!(hint.contains("branches: main"), "{hint}");
}

#[tokio::test]
async fn duplicate_and_invalid_ref_names_are_refused() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn tags_and_commit_refs_are_read_only_and_time_travel() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn commit_prefix_outside_the_refs_history_is_refused() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn stale_commit_rebases_when_its_tables_did_not_change() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn namespaces_guard_their_tables() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn merge_is_three_way_at_table_level() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn merge_commit_makes_source_an_ancestor() {
    let catalog = memory_catalog().await;
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

#[tokio::test]
async fn concurrent_writers_on_one_branch_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let store = SqlStore::open(&path).await.unwrap();
    store.initialize().await.unwrap();
    let catalog = Catalog::new(Arc::new(store));
    commit(&catalog, "main", vec![put("a", Content::namespace())])
        .await
        .unwrap();

    // Separate stores over one file behave like separate processes.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let catalog = Catalog::new(Arc::new(SqlStore::open(&path).await.unwrap()));
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
        }));
    }
    for t in tasks {
        t.await.unwrap();
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

#[tokio::test]
async fn branch_of_a_thousand_tables_shares_them() {
    let catalog = memory_catalog().await;
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

fn new_event(id: &str) -> basin_catalog::NewEvent {
    basin_catalog::NewEvent {
        id: id.into(),
        function: "load".into(),
        payload: serde_json::json!({"key": id}),
        max_attempts: 2,
    }
}

#[tokio::test]
async fn queued_events_are_stored_once_leased_retried_and_dead_lettered() {
    use basin_catalog::{EventOutcome, EventState};
    let catalog = memory_catalog().await;
    let store = catalog.store();
    let stored = store
        .enqueue_events(&[new_event("a"), new_event("b"), new_event("a")])
        .await
        .unwrap();
    assert_eq!(stored, 2, "the same id twice is one event");
    assert_eq!(store.enqueue_events(&[new_event("b")]).await.unwrap(), 0);

    // A lease hides an event from other workers until it runs out.
    let now = 1_000_000_000_000_000;
    let claimed = store
        .claim_events("load", 10, now, now + 5_000)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        claimed
            .iter()
            .all(|e| e.state == EventState::Running && e.attempts == 1)
    );
    assert!(
        store
            .claim_events("load", 10, now + 4_999, now + 9_999)
            .await
            .unwrap()
            .is_empty()
    );
    // The worker died: after the lease, another takes them over.
    let again = store
        .claim_events("load", 1, now + 5_000, now + 10_000)
        .await
        .unwrap();
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("a", 2));

    // Failing the last attempt dead-letters; failing an earlier one backs off.
    let failed = |retry_at_ms| EventOutcome::Failed {
        error: "bad.csv:3: no".into(),
        logs: "reading bad.csv\n".into(),
        retry_at_ms,
    };
    store.finish_event("a", 2, &failed(None)).await.unwrap();
    store
        .finish_event("b", 1, &failed(Some(now + 60_000)))
        .await
        .unwrap();
    let dead = store.events_with_prefix("a").await.unwrap().remove(0);
    assert_eq!(dead.state, EventState::Dead);
    assert_eq!(dead.error.as_deref(), Some("bad.csv:3: no"));
    let due = store.due_events("load", now + 5_000).await.unwrap();
    assert_eq!((due.count, due.next_at_ms), (0, Some(now + 60_000)));
    let due = store.due_events("load", now + 60_000).await.unwrap();
    assert_eq!(due.count, 1);
    assert!(due.oldest_created_ms.is_some());
    assert!(
        store
            .claim_events("load", 10, now + 59_999, now + 70_000)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.retry_events(None).await.unwrap(), 1);
    let counts = store.event_counts(Some("load")).await.unwrap();
    assert_eq!((counts.pending, counts.failed, counts.dead), (1, 1, 0));
}

#[tokio::test]
async fn a_commit_consumes_its_events_exactly_once() {
    use basin_catalog::EventState;
    let catalog = memory_catalog().await;
    let store = catalog.store();
    store
        .enqueue_events(&[new_event("e1"), new_event("e2")])
        .await
        .unwrap();
    let head = catalog.resolve("main").await.unwrap().commit;
    let mut first = CommitRequest::new("main", head.clone(), "load e1").with_operations([put(
        "ns",
        Content::Namespace {
            properties: Default::default(),
        },
    )]);
    first.events = vec!["e1".into()];
    let landed = catalog.commit(first).await.unwrap();

    // A retried (or duplicated) event cannot store its output twice, and its commit is undone.
    let mut twice = CommitRequest::new("main", landed.id.clone(), "load e2 and e1 again")
        .with_operations([put(
            "other",
            Content::Namespace {
                properties: Default::default(),
            },
        )]);
    twice.events = vec!["e2".into(), "e1".into()];
    let refused = catalog.commit(twice).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
    assert_eq!(catalog.resolve("main").await.unwrap().commit, landed.id);

    let e1 = store.events_with_prefix("e1").await.unwrap().remove(0);
    assert_eq!(
        (e1.state, e1.commit),
        (EventState::Succeeded, Some(landed.id.to_string()))
    );
    let e2 = store.events_with_prefix("e2").await.unwrap().remove(0);
    assert_eq!((e2.state, e2.commit), (EventState::Pending, None));
}

#[tokio::test]
async fn a_stale_attempt_cannot_overwrite_the_outcome_of_a_newer_one() {
    use basin_catalog::{EventOutcome, EventState};
    let catalog = memory_catalog().await;
    let store = catalog.store();
    store.enqueue_events(&[new_event("e")]).await.unwrap();
    let now = 1_000_000_000_000_000;
    let first = store
        .claim_events("load", 1, now, now + 5_000)
        .await
        .unwrap();
    assert_eq!(first[0].attempts, 1);
    // The first worker stalls past its lease; a second one takes the event over.
    let second = store
        .claim_events("load", 1, now + 5_000, now + 10_000)
        .await
        .unwrap();
    assert_eq!(second[0].attempts, 2);

    // The old attempt's failure arrives while the new attempt still runs: dropped.
    let failed = EventOutcome::Failed {
        error: "attempt 1 timed out".into(),
        logs: String::new(),
        retry_at_ms: None,
    };
    store.finish_event("e", 1, &failed).await.unwrap();
    let event = store.events_with_prefix("e").await.unwrap().remove(0);
    assert_eq!((event.state, event.error), (EventState::Running, None));

    // The new attempt succeeds; the old one's late failure cannot undo that either.
    let succeeded = EventOutcome::Succeeded {
        logs: "attempt 2\n".into(),
        result: Some(serde_json::json!({"rows": 3})),
    };
    store.finish_event("e", 2, &succeeded).await.unwrap();
    store.finish_event("e", 1, &failed).await.unwrap();
    let stale_success = EventOutcome::Succeeded {
        logs: "attempt 1\n".into(),
        result: Some(serde_json::json!({"rows": 1})),
    };
    store.finish_event("e", 1, &stale_success).await.unwrap();
    let event = store.events_with_prefix("e").await.unwrap().remove(0);
    assert_eq!(event.state, EventState::Succeeded);
    assert_eq!(event.error, None);
    assert_eq!(event.logs, "attempt 2\n");
    assert_eq!(event.result, Some(serde_json::json!({"rows": 3})));
}

/// Retention of settled events: those nothing can deliver again (HTTP calls, schedule slots)
/// go; an object event keeps its row (without logs and result), so the object stays stored
/// once; anything not succeeded stays whole.
#[tokio::test]
async fn pruned_events_keep_what_dedupes_an_object() {
    use basin_catalog::{EventOutcome, EventState, EventsPruned};
    let catalog = memory_catalog().await;
    let store = catalog.store();
    let event = |id: &str, payload: serde_json::Value| basin_catalog::NewEvent {
        payload,
        ..new_event(id)
    };
    let object = event(
        "obj",
        serde_json::json!({"type": "object_created", "bucket": "landing", "key": "a.csv"}),
    );
    let events = [
        object.clone(),
        event("call", serde_json::json!({"amount": 2})),
        event(
            "slot",
            serde_json::json!({"type": "schedule", "slot_ms": 1}),
        ),
        event("fails", serde_json::json!({"amount": 3})),
        event("waits", serde_json::json!({"amount": 4})),
    ];
    assert_eq!(store.enqueue_events(&events).await.unwrap(), 5);
    let now = chrono::Utc::now().timestamp_millis();
    let claimed = store
        .claim_events("load", 4, now, now + 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    for e in &claimed {
        let outcome = if e.id == "fails" {
            EventOutcome::Failed {
                error: "no".into(),
                logs: "tried\n".into(),
                retry_at_ms: None,
            }
        } else {
            EventOutcome::Succeeded {
                logs: "done\n".into(),
                result: Some(serde_json::json!({"ok": true})),
            }
        };
        store.finish_event(&e.id, 1, &outcome).await.unwrap();
    }

    // Settled after the cutoff: nothing to prune.
    let none = store.prune_events(now - 60_000, false).await.unwrap();
    assert_eq!(none, EventsPruned::default());
    let later = chrono::Utc::now().timestamp_millis() + 1;
    let dry = store.prune_events(later, true).await.unwrap();
    let expected = EventsPruned {
        removed: 2,
        slimmed: 1,
    };
    assert_eq!(dry, expected);
    assert_eq!(store.event_counts(None).await.unwrap().succeeded, 3);
    assert_eq!(store.prune_events(later, false).await.unwrap(), expected);

    let mut left = Vec::new();
    for id in ["obj", "call", "slot", "fails", "waits"] {
        left.push(store.events_with_prefix(id).await.unwrap());
    }
    assert!(
        left[1].is_empty() && left[2].is_empty(),
        "the call and the slot are gone"
    );
    let obj = &left[0][0];
    assert_eq!(obj.state, EventState::Succeeded);
    assert_eq!((obj.logs.as_str(), &obj.result), ("", &None));
    assert_eq!(obj.payload["key"], "a.csv", "what it was about stays");
    assert_eq!(left[3][0].state, EventState::Dead);
    assert_eq!(left[3][0].logs, "tried\n");
    assert_eq!(left[4][0].state, EventState::Pending);
    // The bucket's next scan finds the object again: still stored once.
    assert_eq!(store.enqueue_events(&[object]).await.unwrap(), 0);
    assert_eq!(
        store.prune_events(later, false).await.unwrap(),
        EventsPruned::default()
    );
}
