//! Table commits against a SQLite catalog file and a local warehouse: concurrent writers
//! all land, and every file a commit names is durable before its branch moves.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, Int64Array, RecordBatch};
use async_trait::async_trait;
use basin_catalog::{
    Catalog, CommitId, CommitRequest, Content, Key, Operation, Resolved, SqlStore, Store,
};
use basin_table::iceberg::spec::{NestedField, PrimitiveType, Schema, Type, UnboundPartitionSpec};
use basin_table::iceberg::table::Table;
use basin_table::{FileSync, StagedChange, TableChange, TableWriter, Tables, Warehouse};
use futures::TryStreamExt;

#[path = "commits/maintenance.rs"]
mod maintenance;

const TABLE: &str = "c.t";

async fn open_catalog(dir: &Path) -> Catalog {
    let store = SqlStore::open(&dir.join("catalog.db")).await.unwrap();
    store.initialize().await.unwrap();
    Catalog::new(Arc::new(store))
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "n", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap()
}

/// Writes `values` into a new data file of `table`'s and returns it, uncommitted.
async fn data_file(table: &Table, values: Vec<i64>) -> Vec<basin_table::iceberg::spec::DataFile> {
    let mut writer = TableWriter::new(table).await.unwrap();
    let batch =
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(values)) as _)]).unwrap();
    writer.write(batch).await.unwrap();
    writer.close().await.unwrap()
}

/// Appends `values` to `TABLE` on `main` as a writer does: read the head, write, commit.
async fn append(tables: &Tables, values: Vec<i64>) -> basin_core::Result<u32> {
    let key = Key::table(TABLE)?;
    let main = tables.catalog().resolve("main").await?;
    let staged = match tables.catalog().content(&main, &key).await? {
        Some(_) => Tables::stage_existing(tables.load(&main, &key).await?),
        None => {
            tables
                .stage_create(
                    &key,
                    schema(),
                    UnboundPartitionSpec::default(),
                    Default::default(),
                )
                .await?
        }
    };
    let files = data_file(&staged.table, values).await;
    let outcome = tables
        .commit_change(
            &key,
            staged,
            TableChange::Append(files),
            CommitRequest::new("main", main.commit, "append"),
        )
        .await?;
    Ok(outcome.attempts)
}

/// Replaces the rows of `TABLE` on `main` with `values`, read at main's head.
async fn replace(tables: &Tables, values: Vec<i64>) {
    let key = Key::table(TABLE).unwrap();
    let main = tables.catalog().resolve("main").await.unwrap();
    let table = tables.load(&main, &key).await.unwrap();
    let files = data_file(&table, values).await;
    tables
        .commit_change(
            &key,
            Tables::stage_existing(table),
            TableChange::Replace(files),
            CommitRequest::new("main", main.commit, "replace"),
        )
        .await
        .unwrap();
}

async fn create_namespace(catalog: &Catalog) {
    let head = catalog.resolve("main").await.unwrap().commit;
    catalog
        .commit(
            CommitRequest::new("main", head, "namespace").with_operations([Operation::Put {
                key: Key::parse("c").unwrap(),
                content: Content::namespace(),
            }]),
        )
        .await
        .unwrap();
}

async fn all_values(tables: &Tables) -> Vec<i64> {
    values_of(tables, TABLE).await
}

async fn values_of(tables: &Tables, name: &str) -> Vec<i64> {
    let main = tables.catalog().resolve("main").await.unwrap();
    let table = tables
        .load(&main, &Key::table(name).unwrap())
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut values: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..n.len()).map(|i| n.value(i)).collect::<Vec<_>>()
        })
        .collect();
    values.sort();
    values
}

/// Regression: 8 processes making 25 appends each to one table used to lose one append
/// to "`c.t` changed on branch `main`" once 20 quick retries ran out. Each writer here has
/// its own connection pool to the catalog file, as separate processes would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_land_all_their_appends() {
    const WRITERS: i64 = 8;
    const APPENDS: i64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(dir.path()).await;
    create_namespace(&catalog).await;
    let warehouse = dir.path().join("warehouse");
    let first = Tables::new(catalog, Warehouse::local(&warehouse).unwrap());
    append(&first, vec![-1]).await.unwrap(); // the table exists before the race

    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (root, warehouse) = (dir.path().to_path_buf(), warehouse.clone());
        writers.spawn(async move {
            let tables = Tables::new(
                open_catalog(&root).await,
                Warehouse::local(&warehouse).unwrap(),
            );
            let (mut retried, mut most) = (0, 0);
            for i in 0..APPENDS {
                let attempts = append(&tables, vec![w * 1000 + i]).await?;
                retried += attempts - 1;
                most = most.max(attempts);
            }
            Ok::<(u32, u32), basin_core::Error>((retried, most))
        });
    }
    let (mut committed, mut retried, mut most) = (0, 0, 0);
    while let Some(done) = writers.join_next().await {
        match done.unwrap() {
            Ok((r, m)) => {
                committed += APPENDS;
                retried += r;
                most = most.max(m);
            }
            Err(e) => panic!("a writer lost an append: {e} (hint: {:?})", e.hint),
        }
    }
    assert_eq!(committed, WRITERS * APPENDS);
    let mut expected: Vec<i64> = (0..WRITERS)
        .flat_map(|w| (0..APPENDS).map(move |i| w * 1000 + i))
        .chain([-1])
        .collect();
    expected.sort();
    assert_eq!(all_values(&first).await, expected, "every row exactly once");
    let log = first
        .catalog()
        .log(&first.catalog().resolve("main").await.unwrap(), 1000)
        .await
        .unwrap();
    // root, namespace, first append, then one commit per append
    assert_eq!(log.len() as i64, 3 + WRITERS * APPENDS);
    eprintln!(
        "{retried} retries for {} appends, at most {most} attempts for one",
        WRITERS * APPENDS
    );
}

/// Records each synced path with the head of `main` at the time of the sync.
#[derive(Debug)]
struct RecordingSync {
    catalog: Catalog,
    synced: Mutex<Vec<(PathBuf, CommitId)>>,
}

#[async_trait]
impl FileSync for RecordingSync {
    async fn sync(&self, files: Vec<PathBuf>, folders: Vec<PathBuf>) -> std::io::Result<()> {
        let head = self.catalog.resolve("main").await.unwrap().commit;
        let mut synced = self.synced.lock().unwrap();
        synced.extend(files.into_iter().chain(folders).map(|p| (p, head.clone())));
        Ok(())
    }
}

/// Every file `table`'s metadata names: itself, every snapshot's manifest list, their
/// manifests and the live data files in them.
async fn named_files(table: &Table) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::from([PathBuf::from(table.metadata_location().unwrap())]);
    for snapshot in table.metadata().snapshots() {
        files.insert(snapshot.manifest_list().into());
        let list = table.manifest_list_reader(snapshot).load().await.unwrap();
        for manifest_file in list.entries() {
            files.insert(PathBuf::from(&manifest_file.manifest_path));
            let manifest = manifest_file.load_manifest(table.file_io()).await.unwrap();
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                files.insert(entry.file_path().into());
            }
        }
    }
    files
}

/// A catalog with namespace `c` and a local warehouse whose syncs are recorded: the folder
/// (kept while it lives), the catalog, the recorder, the warehouse's path and the tables.
async fn recorded() -> (
    tempfile::TempDir,
    Catalog,
    Arc<RecordingSync>,
    PathBuf,
    Tables,
) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(dir.path()).await;
    create_namespace(&catalog).await;
    let recorder = Arc::new(RecordingSync {
        catalog: catalog.clone(),
        synced: Mutex::default(),
    });
    let warehouse_dir = dir.path().join("warehouse");
    let warehouse = Warehouse::local(&warehouse_dir)
        .unwrap()
        .with_file_sync(recorder.clone());
    let tables = Tables::new(catalog.clone(), warehouse);
    (dir, catalog, recorder, warehouse_dir, tables)
}

#[tokio::test]
async fn every_file_a_commit_names_is_synced_before_the_branch_moves() {
    let (_dir, catalog, recorder, warehouse_dir, tables) = recorded().await;

    // A new table, two appends, then a replacement of every row.
    for round in 0..4 {
        let before = catalog.resolve("main").await.unwrap().commit;
        if round < 3 {
            append(&tables, vec![round]).await.unwrap();
        } else {
            replace(&tables, vec![7, 8]).await;
        }
        let main = catalog.resolve("main").await.unwrap();
        assert_ne!(main.commit, before);
        assert_synced_before_move(
            &tables,
            &recorder,
            &warehouse_dir,
            &format!("round {round}"),
        )
        .await;
    }
    assert_eq!(all_values(&tables).await, vec![7, 8]);
}

/// Every file and folder under `warehouse_dir` that `TABLE` on `main` names was synced
/// before `main` moved to its head, and nothing after.
async fn assert_synced_before_move(
    tables: &Tables,
    recorder: &RecordingSync,
    warehouse_dir: &Path,
    what: &str,
) {
    let main = tables.catalog().resolve("main").await.unwrap();
    let table = tables
        .load(&main, &Key::table(TABLE).unwrap())
        .await
        .unwrap();
    let synced = recorder.synced.lock().unwrap().clone();
    let synced_before_move: HashSet<&Path> = synced
        .iter()
        .filter(|(_, head)| *head != main.commit)
        .map(|(p, _)| p.as_path())
        .collect();
    for file in named_files(&table).await {
        assert!(
            synced_before_move.contains(file.as_path()),
            "{what}: {} was not synced before `main` moved to it",
            file.display()
        );
        let mut folder = file.parent();
        while let Some(dir) = folder.filter(|d| d.starts_with(warehouse_dir)) {
            assert!(
                synced_before_move.contains(dir),
                "{what}: folder {} was not synced",
                dir.display()
            );
            folder = dir.parent();
        }
    }
    assert!(
        synced.iter().all(|(_, head)| *head != main.commit),
        "{what}: nothing is synced after the branch moved"
    );
}

/// A merge that combines appends made on both branches writes the target's new metadata,
/// manifest list and manifest: synced before the merge commit moves the target.
#[tokio::test]
async fn a_merge_of_appends_on_both_sides_is_synced_before_the_branch_moves() {
    let (_dir, catalog, recorder, warehouse_dir, tables) = recorded().await;
    let key = Key::table(TABLE).unwrap();
    append(&tables, vec![1]).await.unwrap();
    let base = catalog.resolve("main").await.unwrap();
    catalog.create_branch("dev", &base).await.unwrap();
    // One append on each side of the merge.
    let dev = catalog.resolve("dev").await.unwrap();
    let staged = Tables::stage_existing(tables.load(&dev, &key).await.unwrap());
    let files = data_file(&staged.table, vec![2]).await;
    tables
        .commit_change(
            &key,
            staged,
            TableChange::Append(files),
            CommitRequest::new("dev", dev.commit, "append"),
        )
        .await
        .unwrap();
    append(&tables, vec![3]).await.unwrap();

    let (dev, main) = (
        catalog.resolve("dev").await.unwrap(),
        catalog.resolve("main").await.unwrap(),
    );
    let location = |at: Resolved| {
        let catalog = catalog.clone();
        let key = key.clone();
        async move { catalog.table_location(&at, &key).await.unwrap() }
    };
    let merge = tables
        .mergeable_appends(
            &key,
            &location(base).await,
            &location(dev.clone()).await,
            &location(main.clone()).await,
        )
        .await
        .unwrap()
        .expect("appends on both sides merge");
    let merged = tables.stage_merged_appends(merge).await.unwrap();
    let mut request = CommitRequest::new("main", main.commit, "merge dev into main")
        .with_operations([Operation::Put {
            key: key.clone(),
            content: Content::table(merged.metadata_location().unwrap().to_string()),
        }]);
    request.merge_parent = Some(dev.commit);
    catalog.commit(request).await.unwrap();

    assert_synced_before_move(&tables, &recorder, &warehouse_dir, "the merge").await;
    assert_eq!(all_values(&tables).await, vec![1, 2, 3]);
}

/// A table of three one-row appends on main, and main's head and the table as read there.
async fn three_appends() -> (tempfile::TempDir, Tables, Key, Resolved, Table) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(dir.path()).await;
    create_namespace(&catalog).await;
    let tables = Tables::new(catalog, Warehouse::local(&dir.path().join("w")).unwrap());
    for n in 1..=3 {
        append(&tables, vec![n]).await.unwrap();
    }
    let key = Key::table(TABLE).unwrap();
    let read_at = tables.catalog().resolve("main").await.unwrap();
    let table = tables.load(&read_at, &key).await.unwrap();
    (dir, tables, key, read_at, table)
}

/// A load of several tables (`basin ingest`) lands as one commit: a table replaced and a
/// new one created together. Another writer's append to the replaced table meanwhile makes
/// the commit re-stage on the new head: the replacement still holds only its own rows.
#[tokio::test]
async fn several_tables_change_in_one_commit_rebased_over_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = open_catalog(dir.path()).await;
    create_namespace(&catalog).await;
    let tables = Tables::new(
        catalog,
        Warehouse::local(&dir.path().join("warehouse")).unwrap(),
    );
    append(&tables, vec![1]).await.unwrap();
    let main = tables.catalog().resolve("main").await.unwrap();
    let (t, u) = (Key::table(TABLE).unwrap(), Key::table("c.u").unwrap());
    let replaced = Tables::stage_existing(tables.load(&main, &t).await.unwrap());
    let created = tables
        .stage_create(
            &u,
            schema(),
            UnboundPartitionSpec::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let (t_files, u_files) = (
        data_file(&replaced.table, vec![10, 11]).await,
        data_file(&created.table, vec![5]).await,
    );
    append(&tables, vec![2]).await.unwrap(); // the race
    let raced = tables.catalog().resolve("main").await.unwrap().commit;

    let commit = tables
        .commit_changes(
            vec![
                StagedChange {
                    key: t.clone(),
                    staged: replaced,
                    change: TableChange::Replace(t_files),
                },
                StagedChange {
                    key: u.clone(),
                    staged: created,
                    change: TableChange::Append(u_files),
                },
            ],
            CommitRequest::new("main", main.commit, "ingest: 2 tables"),
        )
        .await
        .unwrap();

    assert_eq!(commit.parent.as_ref(), Some(&raced));
    assert_eq!(values_of(&tables, TABLE).await, [10, 11]);
    assert_eq!(values_of(&tables, "c.u").await, [5]);
    let before = Resolved {
        spec: raced.to_string(),
        branch: None,
        commit: raced,
    };
    assert!(
        tables
            .catalog()
            .content(&before, &u)
            .await
            .unwrap()
            .is_none()
    );
}

/// A metadata file never changes, so a table loaded from one is kept: loading it again hands
/// out the same parsed metadata. Under another name it is read again; with `[sql]
/// table_cache = 0`, every load reads the file.
#[tokio::test]
async fn a_table_loaded_once_is_kept_for_the_next_load() {
    let (_dir, tables, key, read_at, first) = three_appends().await;
    let before = tables.loaded_tables();
    let again = tables.load(&read_at, &key).await.unwrap();
    assert!(Arc::ptr_eq(&first.metadata_ref(), &again.metadata_ref()));
    let after = tables.loaded_tables();
    assert_eq!((after.hits, after.misses), (before.hits + 1, before.misses));

    let location = first.metadata_location().unwrap();
    let renamed = tables
        .load_from(&Key::table("c.u").unwrap(), location)
        .await
        .unwrap();
    assert_eq!(renamed.identifier().name(), "u");
    assert_eq!(tables.loaded_tables().misses, after.misses + 1);

    let uncached = tables.clone().with_table_cache(0);
    let a = uncached.load(&read_at, &key).await.unwrap();
    let b = uncached.load(&read_at, &key).await.unwrap();
    assert!(!Arc::ptr_eq(&a.metadata_ref(), &b.metadata_ref()));
    assert_eq!(uncached.loaded_tables(), Default::default());
}
