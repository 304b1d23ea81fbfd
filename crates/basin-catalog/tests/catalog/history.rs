//! History retention: what `prune_history` removes, and that what stays still reads, logs
//! and merges.

use basin_catalog::{Content, HistoryRetention};

use super::{Fixture, commit, key, put};

every_store!(
    pruned_history_keeps_heads_tags_and_merge_bases_and_says_where_it_was_cut,
    a_tag_keeps_its_commit_forever_and_named_commits_stay,
);

fn everything_older_than_now(note: &str) -> HistoryRetention {
    HistoryRetention {
        cutoff_ms: chrono::Utc::now().timestamp_millis() + 1,
        keep: Vec::new(),
        note: note.into(),
    }
}

async fn pruned_history_keeps_heads_tags_and_merge_bases_and_says_where_it_was_cut(
    fixture: Fixture,
) {
    let catalog = fixture.catalog().await;
    let table = |v: &str| Content::table(format!("/w/t/{v}.metadata.json"));
    commit(&catalog, "main", vec![put("ns", Content::namespace())])
        .await
        .unwrap();
    let fork = commit(&catalog, "main", vec![put("ns.t", table("v1"))])
        .await
        .unwrap();
    let main_at_fork = catalog.resolve("main").await.unwrap();
    catalog.create_tag("v1", &main_at_fork).await.unwrap();
    catalog.create_branch("dev", &main_at_fork).await.unwrap();
    commit(&catalog, "dev", vec![put("ns.d", table("d1"))])
        .await
        .unwrap();
    let between = commit(&catalog, "main", vec![put("ns.t", table("v2"))])
        .await
        .unwrap();
    commit(&catalog, "main", vec![put("ns.t", table("v3"))])
        .await
        .unwrap();
    catalog.delete_tag("v1").await.unwrap();
    let store = catalog.store();
    let before = store.all_metadata_locations(&[]).await.unwrap().len();

    // A dry run counts and changes nothing.
    let retention = everything_older_than_now("keep_history = 1ms");
    let dry = store.prune_history(&retention, true).await.unwrap();
    // Kept: the heads of main and dev, and their merge base (the fork); removed: the root,
    // the namespace commit, and the commit between the fork and main's head.
    assert_eq!((dry.commits_kept, dry.commits_removed), (3, 3), "{dry:?}");
    assert!(store.get_commit(&between.id).await.unwrap().is_some());
    assert_eq!(
        store
            .all_metadata_locations(&dry.removed)
            .await
            .unwrap()
            .len(),
        before - 1,
        "v2 is read by nothing else"
    );

    let pruned = store.prune_history(&retention, false).await.unwrap();
    assert_eq!(pruned.commits_removed, 3);
    assert!(store.get_commit(&between.id).await.unwrap().is_none());
    assert_eq!(
        store.all_metadata_locations(&[]).await.unwrap().len(),
        before - 1
    );
    // The log of main stops at its head, where history was cut.
    let main = catalog.resolve("main").await.unwrap();
    let log = catalog.log(&main, 100).await.unwrap();
    assert_eq!(log.len(), 1);
    let cut = store.history_cut(&log[0].id).await.unwrap().unwrap();
    assert_eq!(cut.note, "keep_history = 1ms");
    // The fork is still an ancestor of main (grafted), so dev merges three-way.
    assert!(store.is_ancestor(&fork.id, &main.commit).await.unwrap());
    let dev = catalog.resolve("dev").await.unwrap();
    let plan = catalog.plan_merge(&dev, "main").await.unwrap();
    assert_eq!(plan.base, fork.id);
    assert!(plan.conflicts.is_empty());
    assert_eq!(plan.operations.len(), 1);
    // Every ref still reads what it read.
    assert_eq!(
        catalog.content(&main, &key("ns.t")).await.unwrap(),
        Some(table("v3"))
    );
    // A second prune finds nothing more.
    let again = store.prune_history(&retention, false).await.unwrap();
    assert_eq!(again.commits_removed, 0);
}

async fn a_tag_keeps_its_commit_forever_and_named_commits_stay(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    commit(&catalog, "main", vec![put("ns", Content::namespace())])
        .await
        .unwrap();
    let tagged = catalog.resolve("main").await.unwrap();
    catalog.create_tag("v1", &tagged).await.unwrap();
    let read = commit(&catalog, "main", vec![put("ns.a", Content::namespace())])
        .await
        .unwrap();
    commit(&catalog, "main", vec![put("ns.b", Content::namespace())])
        .await
        .unwrap();
    commit(&catalog, "main", vec![put("ns.c", Content::namespace())])
        .await
        .unwrap();
    let retention = HistoryRetention {
        keep: vec![read.id.clone()],
        ..everything_older_than_now("keep_history = 1ms")
    };
    catalog
        .store()
        .prune_history(&retention, false)
        .await
        .unwrap();
    let store = catalog.store();
    assert!(store.get_commit(&tagged.commit).await.unwrap().is_some());
    assert!(store.get_commit(&read.id).await.unwrap().is_some());
    let v1 = catalog.resolve("v1").await.unwrap();
    assert!(catalog.content(&v1, &key("ns")).await.unwrap().is_some());
}
