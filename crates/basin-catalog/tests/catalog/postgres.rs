//! What only the Postgres store has: wake-ups through LISTEN/NOTIFY, the claim's plan,
//! connection errors, and choosing the store by location.

use basin_catalog::Queue;
use std::time::Duration;

use basin_catalog::{EventOutcome, NewEvent, PgStore, Store, open_store};
use basin_core::ErrorKind;
use sqlx::{Connection, PgConnection};

use super::events::new_event;
use super::{Fixture, pg};

/// A guard against a hang, not a measurement: a wake-up that never comes fails the test.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_retried_events_wake_listening_nodes() {
    let Some(fixture) = Fixture::postgres().await else {
        return;
    };
    let idle = PgStore::connect(fixture.location()).await.unwrap();
    idle.initialize().await.unwrap();
    let mut wakeups = idle.listen().await.unwrap();
    let busy = fixture.store().await;
    let next = async |wakeups: &mut basin_catalog::EventWakeups| {
        tokio::time::timeout(PATIENCE, wakeups.recv())
            .await
            .expect("a wake-up")
            .unwrap()
    };

    assert_eq!(busy.enqueue_events(&[new_event("e1")]).await.unwrap(), 1);
    assert_eq!(next(&mut wakeups).await, "load");

    // Queuing an event stored before wakes nobody: the next wake-up is the other function's.
    assert_eq!(busy.enqueue_events(&[new_event("e1")]).await.unwrap(), 0);
    let other = NewEvent {
        function: "other".into(),
        ..new_event("o1")
    };
    assert_eq!(busy.enqueue_events(&[other]).await.unwrap(), 1);
    assert_eq!(next(&mut wakeups).await, "other");

    // A dead event made pending again wakes its function too.
    let now = chrono::Utc::now().timestamp_millis();
    let claimed = busy
        .claim_events("load", 1, now, now + 60_000, "node-a")
        .await
        .unwrap();
    let dead = EventOutcome::Failed {
        error: "no".into(),
        logs: String::new(),
        retry_at_ms: None,
    };
    busy.finish_event(&claimed[0].id, 1, &dead).await.unwrap();
    assert_eq!(busy.retry_events(None).await.unwrap(), 1);
    assert_eq!(next(&mut wakeups).await, "load");
}

/// A database whose default is SERIALIZABLE: the store still runs at READ COMMITTED, so
/// commits to one branch queue on its row lock and claims re-check rows instead of failing
/// with serialization errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_defaulting_to_serializable_still_queues_commits_and_claims() {
    let Some(fixture) = serializable().await else {
        return;
    };
    super::concurrent_writers_on_one_branch_lose_no_update(fixture).await;
    let fixture = serializable().await.expect("the server is up");
    super::events::two_nodes_claiming_at_once_never_take_the_same_event(fixture).await;
}

/// A fresh database whose transactions default to SERIALIZABLE.
async fn serializable() -> Option<Fixture> {
    let fixture = Fixture::postgres().await?;
    let mut conn = PgConnection::connect(fixture.location()).await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {database} SET default_transaction_isolation = 'serializable'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    Some(fixture)
}

/// The claim's generic plan (what a prepared statement runs after a few executions) reads
/// the `events_queue` index in claim order, not the whole table nor a sort of every due event, on a queue that looks like production's:
/// many functions, most events long settled, and one function with a backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claims_generic_plan_reads_the_index() {
    let Some(fixture) = Fixture::postgres().await else {
        return;
    };
    let store = PgStore::connect(fixture.location()).await.unwrap();
    store.initialize().await.unwrap();
    let events: Vec<NewEvent> = (0..5000)
        .map(|i| NewEvent {
            function: format!("f{}", i % 50),
            ..new_event(&format!("e{i:05}"))
        })
        .collect();
    store.enqueue_events(&events).await.unwrap();
    let mut conn = PgConnection::connect(fixture.location()).await.unwrap();
    sqlx::query("UPDATE events SET state = 'succeeded' WHERE id >= 'e00100'")
        .execute(&mut conn)
        .await
        .unwrap();
    // And a backlog: one busy function with 3,000 events waiting.
    let backlog: Vec<NewEvent> = (0..3000)
        .map(|i| NewEvent {
            function: "busy".into(),
            ..new_event(&format!("b{i:05}"))
        })
        .collect();
    store.enqueue_events(&backlog).await.unwrap();
    sqlx::query("ANALYZE events")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan = store.explain_claim().await.unwrap();
    eprintln!("the claim's generic plan:\n{plan}");
    assert!(plan.contains("events_queue"), "{plan}");
    assert!(
        !plan.contains("Sort"),
        "read in claim order, not sorted: {plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test]
async fn a_refused_connection_names_the_url_without_its_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://basin:s3cret@127.0.0.1:{port}/lake");
    let err = PgStore::connect(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(
        err.message
            .contains(&format!("postgres://basin@127.0.0.1:{port}/lake")),
        "{}",
        err.message
    );
    let hint = err.hint.clone().expect("a hint");
    let everything = format!("{} {hint} {err:?}", err.message);
    assert!(!everything.contains("s3cret"), "{everything}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_a_hint_and_not_shown() {
    let Some(server) = pg::server().await else {
        return;
    };
    let url = server
        .url("postgres")
        .replace(":basin-suite@", ":not-the-password@");
    let err = PgStore::connect(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.hint.as_deref().unwrap().contains("password"), "{err:?}");
    assert!(!format!("{err:?}").contains("not-the-password"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_store_picks_the_store_by_location() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("catalog.db");
    let sqlite = open_store(path.to_str().unwrap()).await.unwrap();
    assert!(format!("{sqlite:?}").starts_with("SqlStore"), "{sqlite:?}");
    assert!(path.exists());
    let Some(fixture) = Fixture::postgres().await else {
        return;
    };
    for scheme in ["postgres://", "postgresql://"] {
        let url = fixture.location().replacen("postgres://", scheme, 1);
        let store = open_store(&url).await.unwrap();
        let shown = format!("{store:?}");
        assert!(shown.starts_with("PgStore"), "{shown}");
        assert!(
            !shown.contains("basin-suite"),
            "the password stays out: {shown}"
        );
        store.initialize().await.unwrap();
        assert!(store.get_ref("main").await.unwrap().is_some());
    }
}
