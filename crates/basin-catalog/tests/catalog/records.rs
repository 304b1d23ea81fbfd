//! What the catalog keeps besides commits: pipeline and maintenance runs, access tokens,
//! metering records, deployed functions and trigger cursors.

use basin_catalog::TokenRecord;
use basin_core::{ErrorKind, InvocationKind, InvocationRecord, InvocationStatus};

use super::Fixture;

every_store!(
    run_records_are_replaced_listed_newest_first_and_deleted,
    tokens_are_found_by_hash_and_deleted_once,
    invocations_are_listed_from_a_time_oldest_first,
    functions_and_their_cursors_are_saved_replaced_and_deleted,
    a_setting_is_fixed_by_the_first_node_and_kept,
    a_lease_is_held_by_one_node_until_it_runs_out,
);

async fn run_records_are_replaced_listed_newest_first_and_deleted(fixture: Fixture) {
    let store = fixture.store().await;
    store.save_run("run-a1", 100, r#"{"v": 1}"#).await.unwrap();
    store.save_run("run-b2", 200, r#"{"v": 2}"#).await.unwrap();
    store.save_run("run-a3", 300, r#"{"v": 3}"#).await.unwrap();
    // Replacing keeps the record's start time; the document comes back byte for byte.
    store
        .save_run("run-a1", 999, r#"{"v":  10}"#)
        .await
        .unwrap();
    assert_eq!(store.runs(2).await.unwrap(), [r#"{"v": 3}"#, r#"{"v": 2}"#]);
    assert_eq!(store.runs(10).await.unwrap()[2], r#"{"v":  10}"#);
    assert_eq!(
        store.runs_with_prefix("RUN-A").await.unwrap(),
        [r#"{"v": 3}"#, r#"{"v":  10}"#],
        "prefixes match whatever the case, newest id first"
    );
    assert_eq!(store.runs_with_prefix("run-c").await.unwrap().len(), 0);
    let gone = store
        .delete_runs(&["run-a1".into(), "run-zz".into()])
        .await
        .unwrap();
    assert_eq!(gone, 1);
    assert_eq!(store.runs(10).await.unwrap().len(), 2);

    store.save_maintenance("m1", 100, "first").await.unwrap();
    store.save_maintenance("m2", 200, "second").await.unwrap();
    store.save_maintenance("m3", 300, "third").await.unwrap();
    assert_eq!(
        store.maintenance_runs(2).await.unwrap(),
        ["third", "second"]
    );
    assert_eq!(store.delete_maintenance_before(300).await.unwrap(), 2);
    assert_eq!(store.maintenance_runs(10).await.unwrap(), ["third"]);
}

async fn tokens_are_found_by_hash_and_deleted_once(fixture: Fixture) {
    let store = fixture.store().await;
    let token = |id: &str, created_at_ms| TokenRecord {
        id: id.into(),
        name: format!("{id}'s laptop"),
        role: "writer".into(),
        hash: format!("sha256-{id}"),
        created_at_ms,
        grants: if id == "t2" {
            vec!["read:sales.*@main".into()]
        } else {
            Vec::new()
        },
    };
    store.create_token(&token("t2", 20)).await.unwrap();
    store.create_token(&token("t1", 10)).await.unwrap();
    assert_eq!(
        store.tokens().await.unwrap(),
        [token("t1", 10), token("t2", 20)]
    );
    assert_eq!(
        store.token_by_hash("sha256-t2").await.unwrap(),
        Some(token("t2", 20))
    );
    assert_eq!(store.token_by_hash("sha256-none").await.unwrap(), None);
    store.delete_token("t1").await.unwrap();
    let err = store.delete_token("t1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.tokens().await.unwrap().len(), 1);
}

async fn invocations_are_listed_from_a_time_oldest_first(fixture: Fixture) {
    let store = fixture.store().await;
    let invocation = |id: &str, started_at_ms| InvocationRecord {
        id: id.into(),
        function: "clean.py:orders".into(),
        env_hash: "abc".into(),
        started_at_ms,
        duration_ms: 12.5,
        cpu_ms: 3.25,
        peak_memory_bytes: 1 << 20,
        memory_limit_bytes: 1 << 30,
        rows_in: 10,
        bytes_in: 1000,
        rows_out: 5,
        bytes_out: 500,
        status: InvocationStatus::Timeout,
        error: Some("killed at 30s".into()),
        kind: InvocationKind::Query,
        bytes_scanned: u64::from(u32::MAX) + 1,
    };
    for (id, at) in [("i3", 300), ("i1", 100), ("i2", 200)] {
        store.record_invocation(&invocation(id, at)).await.unwrap();
    }
    let since = store.invocations(200).await.unwrap();
    assert_eq!(since, [invocation("i2", 200), invocation("i3", 300)]);
    assert_eq!(store.invocations(0).await.unwrap().len(), 3);
}

async fn functions_and_their_cursors_are_saved_replaced_and_deleted(fixture: Fixture) {
    let store = fixture.store().await;
    store
        .save_function("zeta", r#"{"n": "zeta"}"#)
        .await
        .unwrap();
    store
        .save_function("alpha", r#"{"n": "a1"}"#)
        .await
        .unwrap();
    store
        .save_function("alpha", r#"{"n": "a2"}"#)
        .await
        .unwrap();
    assert_eq!(
        store.functions().await.unwrap(),
        [r#"{"n": "a2"}"#, r#"{"n": "zeta"}"#]
    );

    assert_eq!(store.cursor("schedule:alpha").await.unwrap(), None);
    store.set_cursor("schedule:alpha", 60_000).await.unwrap();
    store.set_cursor("schedule:alpha", 120_000).await.unwrap();
    store.set_cursor("s3:landing", 7).await.unwrap();
    assert_eq!(store.cursor("schedule:alpha").await.unwrap(), Some(120_000));

    // Deleting a function forgets its schedule's cursor, not other sources'.
    store.delete_function("alpha").await.unwrap();
    assert_eq!(store.cursor("schedule:alpha").await.unwrap(), None);
    assert_eq!(store.cursor("s3:landing").await.unwrap(), Some(7));
    assert_eq!(store.functions().await.unwrap(), [r#"{"n": "zeta"}"#]);
    let err = store.delete_function("alpha").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn a_setting_is_fixed_by_the_first_node_and_kept(fixture: Fixture) {
    let first = fixture.store().await;
    let other = fixture.node().await;
    assert_eq!(first.setting("warehouse").await.unwrap(), None);
    assert_eq!(
        first.fix_setting("warehouse", "s3://lake/a").await.unwrap(),
        "s3://lake/a"
    );
    // A later node proposing another value gets the stored one back, unchanged.
    assert_eq!(
        other.fix_setting("warehouse", "s3://lake/b").await.unwrap(),
        "s3://lake/a"
    );
    assert_eq!(
        other.fix_setting("other", "x").await.unwrap(),
        "x",
        "settings are by name"
    );
    assert_eq!(
        first.setting("warehouse").await.unwrap().as_deref(),
        Some("s3://lake/a")
    );
}

async fn a_lease_is_held_by_one_node_until_it_runs_out(fixture: Fixture) {
    let a = fixture.store().await;
    let b = fixture.node().await;
    let now = 1_000_000;
    assert!(a.try_lease("s3:drop", "a", now, now + 3_000).await.unwrap());
    assert!(
        !b.try_lease("s3:drop", "b", now + 1_000, now + 4_000)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        b.try_lease("other", "b", now, now + 1_000).await.unwrap(),
        "leases are by name"
    );
    // The holder renews it; another node still cannot take it.
    assert!(
        a.try_lease("s3:drop", "a", now + 2_000, now + 5_000)
            .await
            .unwrap()
    );
    assert!(
        !b.try_lease("s3:drop", "b", now + 4_999, now + 8_000)
            .await
            .unwrap()
    );
    // a stopped renewing: once it ran out, b takes it, and a has lost it.
    assert!(
        b.try_lease("s3:drop", "b", now + 5_000, now + 8_000)
            .await
            .unwrap()
    );
    assert!(
        !a.try_lease("s3:drop", "a", now + 6_000, now + 9_000)
            .await
            .unwrap()
    );
    // Released by its holder (only): free at once, and its row is gone.
    a.release_lease("s3:drop", "a").await.unwrap();
    assert!(
        !a.try_lease("s3:drop", "a", now + 6_000, now + 9_000)
            .await
            .unwrap(),
        "a release by another holder does nothing"
    );
    b.release_lease("s3:drop", "b").await.unwrap();
    assert!(
        a.try_lease("s3:drop", "a", now + 6_000, now + 9_000)
            .await
            .unwrap(),
        "free once released, before it would have run out"
    );
}
