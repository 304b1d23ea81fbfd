//! Replacements, compactions, rewrites and expiries racing appends: what was appended
//! meanwhile is kept, and what each snapshot held still reads the same.

use super::*;

/// A replacement's snapshot lists the manifest of what it added and of what it deleted, not
/// those of earlier replacements: each would otherwise read every one before it. What an
/// earlier snapshot held still reads the same.
#[tokio::test]
async fn a_replacement_does_not_carry_the_deleted_manifests_of_earlier_ones() {
    let (_dir, tables, key, _, _) = three_appends().await;
    let mut first = None;
    for round in 0..6 {
        replace(&tables, vec![round * 10, round * 10 + 1]).await;
        let main = tables.catalog().resolve("main").await.unwrap();
        let table = tables.load(&main, &key).await.unwrap();
        let snapshot = table.metadata().current_snapshot().unwrap();
        first.get_or_insert(snapshot.snapshot_id());
        let list = table.manifest_list_reader(snapshot).load().await.unwrap();
        assert!(
            list.entries().len() <= 2,
            "round {round}: {} manifests",
            list.entries().len()
        );
        assert_eq!(all_values(&tables).await, vec![round * 10, round * 10 + 1]);
    }
    // The first replacement's snapshot, read by time travel.
    let main = tables.catalog().resolve("main").await.unwrap();
    let table = tables.load(&main, &key).await.unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .snapshot_id(first.unwrap())
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 2);
}

/// A compaction swaps exactly the files it read: an append that lands between its read and
/// its commit stays, and a file it read that another writer replaced stops it.
#[tokio::test]
async fn a_compaction_keeps_what_was_appended_meanwhile() {
    let (_dir, tables, key, read_at, table) = three_appends().await;
    let live: HashSet<String> = basin_table::live_data_files(&table)
        .await
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(live.len(), 3);
    let compacted = data_file(&table, vec![1, 2, 3]).await;
    // Another writer appends after the compaction read the table.
    append(&tables, vec![4]).await.unwrap();
    tables
        .commit_change(
            &key,
            Tables::stage_existing(table.clone()),
            TableChange::Compact {
                removed: live.clone(),
                added: compacted,
                sort_order: None,
            },
            CommitRequest::new("main", read_at.commit.clone(), "compact"),
        )
        .await
        .unwrap();
    assert_eq!(all_values(&tables).await, [1, 2, 3, 4]);
    let main = tables.catalog().resolve("main").await.unwrap();
    let now = tables.load(&main, &key).await.unwrap();
    assert_eq!(basin_table::live_data_files(&now).await.unwrap().len(), 2);
    let operation = now
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .operation
        .clone();
    assert_eq!(operation, basin_table::iceberg::spec::Operation::Replace);

    // Compacting the old files again finds them gone: a conflict, and nothing changes.
    let again = tables
        .commit_change(
            &key,
            Tables::stage_existing(table.clone()),
            TableChange::Compact {
                removed: live,
                added: data_file(&table, vec![1, 2, 3]).await,
                sort_order: None,
            },
            CommitRequest::new("main", read_at.commit, "compact again"),
        )
        .await;
    assert!(again.is_err());
    assert_eq!(all_values(&tables).await, [1, 2, 3, 4]);
}

/// A rewrite (change data capture's copy-on-write) swaps the files it read for rows that
/// differ, in an `overwrite` snapshot that keeps what was appended meanwhile and carries the
/// commit's properties; if another writer already rewrote one of its files, it is a conflict
/// and nothing changes (staging it again would bring that file's old rows back).
#[tokio::test]
async fn a_rewrite_keeps_appends_and_fails_if_its_files_were_rewritten_meanwhile() {
    let (_dir, tables, key, read_at, table) = three_appends().await;
    let files = basin_table::live_data_files(&table).await.unwrap();
    // The file holding 2, rewritten without it (a delete) and with 20 (an insert).
    let removed: HashSet<String> = files.keys().take(1).cloned().collect();
    append(&tables, vec![4]).await.unwrap();
    let request = CommitRequest::new("main", read_at.commit.clone(), "cdc")
        .with_property("basin.source.lsn", "0/16B3748");
    tables
        .commit_changes(
            vec![basin_table::StagedChange {
                key: key.clone(),
                staged: Tables::stage_existing(table.clone()),
                change: TableChange::Rewrite {
                    removed: removed.clone(),
                    added: data_file(&table, vec![20]).await,
                },
            }],
            request,
        )
        .await
        .unwrap();
    let values = all_values(&tables).await;
    assert_eq!(values.len(), 4, "{values:?}");
    assert!(values.contains(&20) && values.contains(&4));
    let main = tables.catalog().resolve("main").await.unwrap();
    let now = tables.load(&main, &key).await.unwrap();
    let summary = now.metadata().current_snapshot().unwrap().summary().clone();
    assert_eq!(
        summary.operation,
        basin_table::iceberg::spec::Operation::Overwrite
    );
    assert_eq!(
        summary
            .additional_properties
            .get("basin.source.lsn")
            .map(String::as_str),
        Some("0/16B3748")
    );

    let again = tables
        .commit_change(
            &key,
            Tables::stage_existing(table.clone()),
            TableChange::Rewrite {
                removed,
                added: data_file(&table, vec![21]).await,
            },
            CommitRequest::new("main", read_at.commit, "cdc again"),
        )
        .await;
    assert_eq!(again.unwrap_err().kind(), basin_core::ErrorKind::Conflict);
    assert_eq!(all_values(&tables).await, values);
}

/// A compaction rewrites the same rows, so it keeps what the snapshot before it said about
/// their source (`basin.source.*`): once the older snapshot is expired, change data capture
/// still finds its position on the table.
#[tokio::test]
async fn a_compaction_carries_a_sources_position_forward() {
    let (_dir, tables, key, read_at, table) = three_appends().await;
    let files = basin_table::live_data_files(&table).await.unwrap();
    let removed: HashSet<String> = files.keys().take(1).cloned().collect();
    let request = CommitRequest::new("main", read_at.commit.clone(), "cdc")
        .with_property("basin.source", "shop")
        .with_property("basin.source.lsn", "0/16B3748");
    tables
        .commit_changes(
            vec![basin_table::StagedChange {
                key: key.clone(),
                staged: Tables::stage_existing(table.clone()),
                change: TableChange::Rewrite {
                    removed,
                    added: data_file(&table, vec![20]).await,
                },
            }],
            request,
        )
        .await
        .unwrap();
    let main = tables.catalog().resolve("main").await.unwrap();
    let rewritten = tables.load(&main, &key).await.unwrap();
    let live: HashSet<String> = basin_table::live_data_files(&rewritten)
        .await
        .unwrap()
        .into_keys()
        .collect();
    let values = all_values(&tables).await;
    tables
        .commit_change(
            &key,
            Tables::stage_existing(rewritten.clone()),
            TableChange::Compact {
                removed: live,
                added: data_file(&rewritten, values.clone()).await,
                sort_order: None,
            },
            CommitRequest::new("main", main.commit, "compact"),
        )
        .await
        .unwrap();
    let now = tables
        .load(&tables.catalog().resolve("main").await.unwrap(), &key)
        .await
        .unwrap();
    let summary = now.metadata().current_snapshot().unwrap().summary().clone();
    assert_eq!(
        summary.operation,
        basin_table::iceberg::spec::Operation::Replace
    );
    let props = &summary.additional_properties;
    assert_eq!(props.get("basin.source").map(String::as_str), Some("shop"));
    assert_eq!(
        props.get("basin.source.lsn").map(String::as_str),
        Some("0/16B3748")
    );
    assert_eq!(
        props.get("basin.message").map(String::as_str),
        Some("compact")
    );
    assert_eq!(all_values(&tables).await, values);
}

/// An expiry decided on one head and committed after another writer appended keeps that
/// append (it is staged again on the new head); a snapshot that became current meanwhile is
/// a conflict, and nothing changes.
#[tokio::test]
async fn an_expiry_keeps_what_was_appended_meanwhile() {
    let (_dir, tables, key, read_at, table) = three_appends().await;
    let policy = basin_table::ExpirePolicy {
        max_age: Some(std::time::Duration::ZERO),
        retain_last: 1,
    };
    let now_ms = i64::MAX;
    let expired =
        basin_table::snapshots_to_expire(table.metadata(), &policy, &HashSet::new(), now_ms);
    assert_eq!(expired.len(), 2);
    let current = table.metadata().current_snapshot_id().unwrap();
    assert!(!expired.contains(&current), "the current snapshot stays");

    append(&tables, vec![4]).await.unwrap();
    tables
        .commit_change(
            &key,
            Tables::stage_existing(table.clone()),
            TableChange::Expire(expired.iter().copied().collect()),
            CommitRequest::new("main", read_at.commit.clone(), "expire"),
        )
        .await
        .unwrap();
    assert_eq!(all_values(&tables).await, [1, 2, 3, 4]);
    let main = tables.catalog().resolve("main").await.unwrap();
    let now = tables.load(&main, &key).await.unwrap();
    assert_eq!(
        now.metadata().snapshots().len(),
        2,
        "the third and the append"
    );

    // Expiring the current snapshot (as if it had become current meanwhile) is a conflict.
    let head = now.metadata().current_snapshot_id().unwrap();
    let err = tables
        .commit_change(
            &key,
            Tables::stage_existing(now.clone()),
            TableChange::Expire(HashSet::from([head])),
            CommitRequest::new("main", main.commit, "expire the head"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), basin_core::ErrorKind::Conflict);
    assert_eq!(all_values(&tables).await, [1, 2, 3, 4]);
}

/// The gc mark walks every metadata file it is given, whatever order they come in: one an
/// earlier walk saw only as an entry of a newer file's metadata log (a branch still at the
/// old file, while main expired its snapshots) still gets its snapshots marked.
#[tokio::test]
async fn the_mark_walks_an_old_metadata_file_seen_first_in_a_newer_ones_log() {
    let (_dir, tables, key, read_at, old) = three_appends().await;
    let expired: HashSet<i64> = old
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| Some(*id) != old.metadata().current_snapshot_id())
        .collect();
    tables
        .commit_change(
            &key,
            Tables::stage_existing(old.clone()),
            TableChange::Expire(expired.clone()),
            CommitRequest::new("main", read_at.commit.clone(), "expire"),
        )
        .await
        .unwrap();
    let main = tables.catalog().resolve("main").await.unwrap();
    let new = tables.load(&main, &key).await.unwrap();
    let old_location = old.metadata_location().unwrap();
    assert!(
        new.metadata()
            .metadata_log()
            .iter()
            .any(|e| e.metadata_file == old_location),
        "the newer file's log names the old one"
    );

    let mut reachable = basin_table::Reachable::new();
    for location in [new.metadata_location().unwrap(), old_location] {
        reachable
            .add_metadata(tables.warehouse(), location)
            .await
            .unwrap();
    }
    for snapshot in old.metadata().snapshots() {
        assert!(
            reachable.contains(snapshot.manifest_list()),
            "snapshot {} (expired on main: {}) is read by the old metadata file",
            snapshot.snapshot_id(),
            expired.contains(&snapshot.snapshot_id())
        );
    }
}
