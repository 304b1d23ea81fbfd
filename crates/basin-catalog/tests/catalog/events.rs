//! The event queue: storing once, leases, retries, dead letters, outcomes fenced by
//! attempt, commits consuming events exactly once, pruning; and several nodes at once.

use std::collections::BTreeSet;

use basin_catalog::{
    Catalog, CommitRequest, Content, EventFilter, EventOutcome, EventState, NewEvent, RanCall,
};
use basin_core::{ErrorKind, InvocationKind, InvocationRecord, InvocationStatus};

use super::{Fixture, put};

every_store!(
    queued_events_are_stored_once_leased_retried_and_dead_lettered,
    a_commit_consumes_its_events_exactly_once,
    a_stale_attempt_cannot_overwrite_the_outcome_of_a_newer_one,
    pruned_events_keep_what_dedupes_an_object,
    a_renewed_lease_keeps_other_workers_off_and_lists_filter,
    two_nodes_claiming_at_once_never_take_the_same_event,
    two_nodes_committing_one_event_store_it_once,
    a_batch_settles_together_and_drops_its_stale_outcomes,
    a_call_run_at_once_is_stored_settled_with_its_metering,
);

pub(crate) fn new_event(id: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        function: "load".into(),
        payload: serde_json::json!({"key": id}),
        max_attempts: 2,
    }
}

async fn queued_events_are_stored_once_leased_retried_and_dead_lettered(fixture: Fixture) {
    let catalog = fixture.catalog().await;
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
        .claim_events("load", 10, now, now + 5_000, "node-a")
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
            .claim_events("load", 10, now + 4_999, now + 9_999, "node-a")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(claimed.iter().all(|e| e.node.as_deref() == Some("node-a")));
    // The worker died: after the lease, another takes them over.
    let again = store
        .claim_events("load", 1, now + 5_000, now + 10_000, "node-b")
        .await
        .unwrap();
    assert_eq!(
        (
            again[0].id.as_str(),
            again[0].attempts,
            again[0].node.as_deref()
        ),
        ("a", 2, Some("node-b"))
    );

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
            .claim_events("load", 10, now + 59_999, now + 70_000, "node-a")
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.retry_events(None).await.unwrap(), 1);
    let counts = store.event_counts(Some("load")).await.unwrap();
    assert_eq!((counts.pending, counts.failed, counts.dead), (1, 1, 0));
}

async fn a_commit_consumes_its_events_exactly_once(fixture: Fixture) {
    let catalog = fixture.catalog().await;
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

async fn a_stale_attempt_cannot_overwrite_the_outcome_of_a_newer_one(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    let store = catalog.store();
    store.enqueue_events(&[new_event("e")]).await.unwrap();
    let now = 1_000_000_000_000_000;
    let first = store
        .claim_events("load", 1, now, now + 5_000, "node-a")
        .await
        .unwrap();
    assert_eq!(first[0].attempts, 1);
    // The first worker stalls past its lease; a second one takes the event over.
    let second = store
        .claim_events("load", 1, now + 5_000, now + 10_000, "node-a")
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
async fn pruned_events_keep_what_dedupes_an_object(fixture: Fixture) {
    use basin_catalog::EventsPruned;
    let catalog = fixture.catalog().await;
    let store = catalog.store();
    let event = |id: &str, payload: serde_json::Value| NewEvent {
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
        .claim_events("load", 4, now, now + 60_000, "node-a")
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

async fn a_renewed_lease_keeps_other_workers_off_and_lists_filter(fixture: Fixture) {
    let store = fixture.store().await;
    let other = NewEvent {
        function: "other".into(),
        ..new_event("o1")
    };
    store
        .enqueue_events(&[new_event("e1"), new_event("e2"), other])
        .await
        .unwrap();
    let now = 1_000_000_000_000_000;
    let claimed = store
        .claim_events("load", 1, now, now + 5_000, "node-a")
        .await
        .unwrap();
    assert_eq!(claimed[0].id, "e1");
    // The worker still runs at the end of its lease and renews it: nobody else takes it.
    store
        .renew_leases(&["e1".into(), "e2".into()], now + 60_000)
        .await
        .unwrap();
    let later = store
        .claim_events("load", 10, now + 5_000, now + 10_000, "node-a")
        .await
        .unwrap();
    let ids: Vec<&str> = later.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["e2"],
        "e1's lease was renewed; e2 was not running, so not renewed"
    );
    let e1 = store.events_with_prefix("e1").await.unwrap().remove(0);
    assert_eq!(e1.lease_until_ms, Some(now + 60_000));

    let listed = |state, function: Option<&str>, limit| EventFilter {
        state,
        function: function.map(String::from),
        limit,
    };
    let all = store.events(&listed(None, None, 10)).await.unwrap();
    assert_eq!(all.len(), 3);
    let running = store
        .events(&listed(Some(EventState::Running), Some("load"), 10))
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    let pending = store
        .events(&listed(Some(EventState::Pending), None, 10))
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["o1"]
    );
    assert_eq!(store.events(&listed(None, None, 1)).await.unwrap().len(), 1);
    let counts = store.event_counts(None).await.unwrap();
    assert_eq!((counts.pending, counts.running), (1, 2));
    assert_eq!(store.event_counts(Some("other")).await.unwrap().running, 0);
}

/// 200 events, two nodes with four claimers each claiming at the same time until the queue
/// is empty: every event is claimed, and claimed once.
pub(super) async fn two_nodes_claiming_at_once_never_take_the_same_event(fixture: Fixture) {
    let store = fixture.store().await;
    let events: Vec<NewEvent> = (0..200).map(|i| new_event(&format!("e{i:03}"))).collect();
    assert_eq!(store.enqueue_events(&events).await.unwrap(), 200);
    let nodes = [fixture.node().await, fixture.node().await];
    let now = chrono::Utc::now().timestamp_millis();
    let mut claimers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let node = nodes[i % 2].clone();
        let name = format!("node-{}", i % 2);
        claimers.spawn(async move {
            let mut claimed = Vec::new();
            loop {
                // A lease of an hour: nothing becomes due again during the test.
                let batch = node
                    .claim_events("load", 7, now, now + 3_600_000, &name)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                assert!(
                    batch
                        .iter()
                        .all(|e| e.node.as_deref() == Some(name.as_str()))
                );
                claimed.extend(batch);
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(batch) = claimers.join_next().await {
        claimed.extend(batch.unwrap());
    }
    let ids: BTreeSet<&str> = claimed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(claimed.len(), 200, "claims in all");
    assert_eq!(ids.len(), 200, "distinct events claimed");
    assert!(claimed.iter().all(|e| e.attempts == 1));
    assert_eq!(store.event_counts(Some("load")).await.unwrap().running, 200);
}

/// Two nodes each commit the output of the same event (a duplicate delivery) at once:
/// one commit lands, the other is refused and leaves no trace.
async fn two_nodes_committing_one_event_store_it_once(fixture: Fixture) {
    let catalog = fixture.catalog().await;
    catalog
        .store()
        .enqueue_events(&[new_event("e1")])
        .await
        .unwrap();
    let head = catalog.resolve("main").await.unwrap().commit;
    let landed = catalog
        .commit(
            CommitRequest::new("main", head, "ns")
                .with_operations([put("ns", Content::namespace())]),
        )
        .await
        .unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..2 {
        let node = Catalog::new(fixture.node().await);
        let head = landed.id.clone();
        writers.spawn(async move {
            let mut request = CommitRequest::new("main", head, format!("load e1 on node {i}"))
                .with_operations([put(&format!("ns.t{i}"), Content::table(format!("m{i}")))]);
            request.events = vec!["e1".into()];
            node.commit(request).await
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = writers.join_next().await {
        outcomes.push(done.unwrap());
    }
    let winner = outcomes
        .iter()
        .find_map(|o| o.as_ref().ok())
        .expect("one commit lands")
        .clone();
    let refused: Vec<ErrorKind> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(|e| e.kind()))
        .collect();
    assert_eq!(refused, [ErrorKind::AlreadyExists]);
    let main = catalog.resolve("main").await.unwrap();
    assert_eq!(main.commit, winner.id);
    let tables = catalog.contents(&main).await.unwrap();
    assert_eq!(tables.values().filter(|c| c.is_table()).count(), 1);
    let e1 = catalog
        .store()
        .events_with_prefix("e1")
        .await
        .unwrap()
        .remove(0);
    assert_eq!(e1.commit, Some(winner.id.to_string()));
}

/// `finish_events` settles a batch in one go, each outcome fenced by its attempt as
/// `finish_event` is: an outcome of an attempt that lost its lease is dropped.
async fn a_batch_settles_together_and_drops_its_stale_outcomes(fixture: Fixture) {
    let store = fixture.store().await;
    let ids = ["p", "q", "r"];
    let events: Vec<NewEvent> = ids.iter().map(|id| new_event(id)).collect();
    store.enqueue_events(&events).await.unwrap();
    let now = 1_000_000_000_000_000;
    let first = store
        .claim_events("load", 3, now, now + 5_000, "node-a")
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    // node-a stalls; after its lease node-b takes r over (attempt 2).
    let taken = store
        .claim_events("load", 3, now + 5_000, now + 10_000, "node-b")
        .await
        .unwrap();
    assert_eq!(taken.len(), 3);
    let ok = |id: &str, attempt| basin_catalog::Settled {
        id: id.into(),
        attempt,
        outcome: EventOutcome::Succeeded {
            logs: format!("{id} by attempt {attempt}\n"),
            result: None,
        },
    };
    // node-b settles p and q; node-a's late batch (attempt 1) arrives after.
    store
        .finish_events(&[ok("p", 2), ok("q", 2)])
        .await
        .unwrap();
    store
        .finish_events(&[ok("p", 1), ok("q", 1), ok("r", 1)])
        .await
        .unwrap();
    let filter = EventFilter {
        limit: 10,
        ..EventFilter::default()
    };
    let listed = store.events(&filter).await.unwrap();
    let by_id = |id: &str| listed.iter().find(|e| e.id == id).unwrap().clone();
    assert_eq!(by_id("p").logs, "p by attempt 2\n");
    assert_eq!(by_id("q").logs, "q by attempt 2\n");
    assert_eq!(
        by_id("r").state,
        EventState::Running,
        "r's late outcome was dropped"
    );
}

/// `record_call` stores a synchronous call that already ran: its event as settled (attempted
/// once, by the node that ran it, never claimed again) and its invocation's metering, which
/// another node sees as soon as it returns.
async fn a_call_run_at_once_is_stored_settled_with_its_metering(fixture: Fixture) {
    let store = fixture.store().await;
    let metered = |id: &str| InvocationRecord {
        id: id.into(),
        function: "score".into(),
        env_hash: "env".into(),
        started_at_ms: 1_000,
        duration_ms: 0.5,
        cpu_ms: 0.25,
        peak_memory_bytes: 1 << 20,
        memory_limit_bytes: 1 << 30,
        rows_in: 0,
        bytes_in: 0,
        rows_out: 0,
        bytes_out: 0,
        status: InvocationStatus::Ok,
        error: None,
        kind: InvocationKind::Function,
        bytes_scanned: 0,
    };
    let call = |id: &str, outcome| RanCall {
        event: NewEvent {
            id: id.into(),
            function: "score".into(),
            payload: serde_json::json!({"id": id}),
            max_attempts: 1,
        },
        node: "node-a".into(),
        created_at_ms: 900,
        outcome,
        invocations: vec![metered(&format!("inv-{id}"))],
    };
    let succeeded = call(
        "c1",
        EventOutcome::Succeeded {
            logs: "scored\n".into(),
            result: Some(serde_json::json!({"score": 3})),
        },
    );
    let failed = RanCall {
        invocations: Vec::new(),
        ..call(
            "c2",
            EventOutcome::Failed {
                error: "ValueError: no score".into(),
                logs: String::new(),
                retry_at_ms: None,
            },
        )
    };
    store.record_call(&succeeded).await.unwrap();
    store.record_call(&failed).await.unwrap();

    let other = fixture.node().await;
    for call in [&succeeded, &failed] {
        let stored = other.events_with_prefix(&call.event.id).await.unwrap();
        let expected = call.settled();
        let stored = &stored[0];
        assert_eq!(
            (&stored.state, stored.attempts, stored.max_attempts),
            (&expected.state, 1, 1)
        );
        assert_eq!(
            (&stored.result, &stored.error, &stored.logs),
            (&expected.result, &expected.error, &expected.logs)
        );
        assert_eq!(
            (&stored.payload, &stored.node),
            (&expected.payload, &expected.node)
        );
        assert_eq!(stored.created_at_ms, 900);
    }
    assert_eq!(succeeded.settled().state, EventState::Succeeded);
    assert_eq!(failed.settled().state, EventState::Dead);
    assert_eq!(
        other.invocations(0).await.unwrap(),
        [metered("inv-c1")],
        "the metering of the call that ran"
    );
    // Settled: no node claims it; and a call is stored once.
    let claimed = other
        .claim_events("score", 10, i64::MAX / 2, i64::MAX / 2 + 1, "node-b")
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
    assert!(store.record_call(&succeeded).await.is_err());
}
