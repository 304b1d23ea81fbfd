//! Protected branches at the catalog (every writer's commit passes here), who a commit says
//! wrote it, and the reviews kept for merges into protected branches.

use basin_catalog::actor::{self, Actor};
use basin_catalog::{
    Clearance, CommitRequest, Content, DOOR_PROPERTY, NewReview, ProtectRule, Protection,
    ReviewState,
};
use basin_core::ErrorKind;

use super::{Fixture, put};

every_store!(
    a_protected_branch_takes_only_cleared_commits,
    a_commit_names_its_author_and_door,
    reviews_keep_approvals_per_principal_and_end_once,
    grants_hide_what_a_principal_may_not_read_and_refuse_its_writes,
    the_audit_log_keeps_commits_and_refusals_by_principal,
);

async fn a_protected_branch_takes_only_cleared_commits(fixture: Fixture) {
    let catalog = fixture
        .catalog()
        .await
        .with_protection(Protection::new(vec![ProtectRule {
            pattern: "main".into(),
            ..ProtectRule::default()
        }]));
    let main = catalog.resolve("main").await.unwrap();
    let direct = CommitRequest::new("main", main.commit.clone(), "direct")
        .with_operations([put("sales", Content::namespace())]);
    let refused = catalog.commit(direct.clone()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Forbidden);
    assert_eq!(
        catalog.resolve("main").await.unwrap(),
        main,
        "nothing landed"
    );
    // Another branch is not protected; a merge cleared by its checks lands on main.
    catalog.create_branch("dev", &main).await.unwrap();
    let mut on_dev = direct.clone();
    on_dev.branch = "dev".into();
    catalog.commit(on_dev).await.unwrap();
    catalog
        .commit(direct.clone().cleared(Clearance::CheckedMerge))
        .await
        .unwrap();
    let e = catalog.delete_branch("main", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "main is never deleted");
    let guarded = catalog.with_protection(Protection::new(vec![ProtectRule {
        pattern: "d*".into(),
        ..ProtectRule::default()
    }]));
    let e = guarded.delete_branch("dev", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    // An admin's bypass clears a direct commit, and a clearance never downgrades it.
    let dev = guarded.resolve("dev").await.unwrap();
    let mut bypassing = Actor::new("root", "api");
    bypassing.bypass_protection = true;
    let request = actor::scope(bypassing, async {
        CommitRequest::new("dev", dev.commit.clone(), "bypass")
            .with_operations([put("more", Content::namespace())])
            .cleared(Clearance::Trial)
    })
    .await;
    assert_eq!(request.clearance, Clearance::Bypass);
    guarded.commit(request).await.unwrap();
}

async fn a_commit_names_its_author_and_door(fixture: Fixture) {
    let catalog = fixture.catalog().await.with_default_author("ana");
    let main = catalog.resolve("main").await.unwrap();
    let local = catalog
        .commit(
            CommitRequest::new("main", main.commit, "local")
                .with_operations([put("a", Content::namespace())]),
        )
        .await
        .unwrap();
    assert_eq!(local.author, "ana");
    assert_eq!(local.properties[DOOR_PROPERTY], "local");
    let head = catalog.resolve("main").await.unwrap().commit;
    let remote = actor::scope(Actor::new("ci-token", "iceberg-rest"), async {
        catalog
            .commit(
                CommitRequest::new("main", head, "remote")
                    .with_operations([put("b", Content::namespace())]),
            )
            .await
    })
    .await
    .unwrap();
    assert_eq!(remote.author, "ci-token");
    assert_eq!(remote.properties[DOOR_PROPERTY], "iceberg-rest");
    let logged = catalog
        .log(&catalog.resolve("main").await.unwrap(), 2)
        .await
        .unwrap();
    assert_eq!(logged[0], remote, "the store keeps author and door");
}

async fn reviews_keep_approvals_per_principal_and_end_once(fixture: Fixture) {
    let store = fixture.store().await;
    let new = |source: &str, at| NewReview {
        source: source.into(),
        target: "main".into(),
        author: "ana".into(),
        title: format!("merge {source}"),
        created_at_ms: at,
    };
    let first = store.open_review(&new("dev", 10)).await.unwrap();
    let second = store.open_review(&new("fix", 20)).await.unwrap();
    assert!(second > first);
    store.approve_review(first, "bo", "c1", 30).await.unwrap();
    store.approve_review(first, "cy", "c1", 40).await.unwrap();
    // Approving again renews the approval (a newer head of the source).
    store.approve_review(first, "bo", "c2", 50).await.unwrap();
    let review = store.review(first).await.unwrap().unwrap();
    assert_eq!(review.state, ReviewState::Open);
    let approvals: Vec<(&str, &str)> = review
        .approvals
        .iter()
        .map(|a| (a.principal.as_str(), a.source_head.as_str()))
        .collect();
    assert_eq!(approvals, [("cy", "c1"), ("bo", "c2")]);
    assert!(
        store
            .end_review(first, ReviewState::Merged, "bo", Some("m1"), 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_review(first, ReviewState::Closed, "cy", None, 70)
            .await
            .unwrap(),
        "a review ends once"
    );
    let merged = store.review(first).await.unwrap().unwrap();
    assert_eq!(merged.state, ReviewState::Merged);
    assert_eq!(merged.merged_commit.as_deref(), Some("m1"));
    assert_eq!(merged.closed_by.as_deref(), Some("bo"));
    let open = store.reviews(Some(ReviewState::Open)).await.unwrap();
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
    let all = store.reviews(None).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second, first]
    );
    assert_eq!(all[1].approvals.len(), 2);
    assert_eq!(store.review(999).await.unwrap(), None);
}

async fn grants_hide_what_a_principal_may_not_read_and_refuse_its_writes(fixture: Fixture) {
    use basin_catalog::{Grant, Grants};
    use std::sync::Arc;
    let catalog = fixture.catalog().await;
    let main = catalog.resolve("main").await.unwrap();
    catalog
        .commit(
            CommitRequest::new("main", main.commit, "setup").with_operations([
                put("sales", Content::namespace()),
                put("sales.orders", Content::table("s3://w/orders")),
                put("hr", Content::namespace()),
                put("hr.salaries", Content::table("s3://w/salaries")),
                put("sandbox", Content::namespace()),
            ]),
        )
        .await
        .unwrap();
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev/ana", &main).await.unwrap();
    let mut ana = Actor::new("ana", "api");
    ana.grants = Some(Arc::new(Grants::new(vec![
        Grant::parse("read:sales.*").unwrap(),
        Grant::parse("write:sandbox.*@dev/*").unwrap(),
    ])));
    actor::scope(ana, async {
        let main = catalog.resolve("main").await.unwrap();
        let keys: Vec<String> = catalog
            .contents(&main)
            .await
            .unwrap()
            .keys()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            keys,
            ["sales", "sales.orders"],
            "hr and sandbox are not there"
        );
        let salaries = basin_catalog::Key::parse("hr.salaries").unwrap();
        assert_eq!(catalog.content(&main, &salaries).await.unwrap(), None);
        let e = catalog.table_location(&main, &salaries).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            !e.hint.clone().unwrap_or_default().contains("salaries"),
            "{e:?}"
        );
        // Writes: only sandbox, only on dev/*.
        let refused = catalog
            .commit(
                CommitRequest::new("main", main.commit.clone(), "x")
                    .with_operations([put("sales.x", Content::table("s3://w/x"))]),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Forbidden, "{refused}");
        let dev = catalog.resolve("dev/ana").await.unwrap();
        catalog
            .commit(
                CommitRequest::new("dev/ana", dev.commit.clone(), "mine")
                    .with_operations([put("sandbox.t", Content::table("s3://w/t"))]),
            )
            .await
            .unwrap();
        let e = catalog.create_branch("release", &main).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        catalog.create_branch("dev/two", &main).await.unwrap();
        // The log keeps the keys ana may read, and hides what she may not.
        let log = catalog
            .log(&catalog.resolve("main").await.unwrap(), 1)
            .await
            .unwrap();
        let changed: Vec<String> = log[0]
            .operations
            .iter()
            .map(|o| o.key().to_string())
            .collect();
        assert_eq!(changed, ["sales", "sales.orders"]);
    })
    .await;
    // Without an actor (the local user) everything is there.
    let all = catalog
        .contents(&catalog.resolve("main").await.unwrap())
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
}

async fn the_audit_log_keeps_commits_and_refusals_by_principal(fixture: Fixture) {
    let catalog = fixture
        .catalog()
        .await
        .with_default_author("ana")
        .with_protection(Protection::new(vec![ProtectRule {
            pattern: "main".into(),
            ..ProtectRule::default()
        }]));
    let main = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &main).await.unwrap();
    let refused = actor::scope(Actor::new("bo", "api"), async {
        catalog
            .commit(
                CommitRequest::new("main", main.commit.clone(), "sneak in")
                    .with_operations([put("x", Content::namespace())]),
            )
            .await
    })
    .await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Forbidden);
    catalog
        .commit(
            CommitRequest::new("dev", main.commit.clone(), "on dev")
                .with_operations([put("x", Content::namespace())]),
        )
        .await
        .unwrap();
    let store = catalog.store();
    let all = store
        .audit(&basin_catalog::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str, &str, &str)> = all
        .iter()
        .map(|e| {
            (
                e.principal.as_str(),
                e.door.as_str(),
                e.action.as_str(),
                e.target.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ana", "local", "commit", "dev", "ok"),
            ("bo", "api", "commit", "main", "refused"),
            ("ana", "local", "create branch", "dev", "ok"),
        ]
    );
    assert!(all[1].detail.contains("protected"), "{:?}", all[1]);
    let bo = store
        .audit(&basin_catalog::AuditFilter {
            principal: Some("bo".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bo.len(), 1);
    let later = store
        .audit(&basin_catalog::AuditFilter {
            since_ms: Some(all[0].at_ms + 1),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(later.is_empty());
    assert_eq!(store.prune_audit(all[0].at_ms + 1).await.unwrap(), 3);
}
