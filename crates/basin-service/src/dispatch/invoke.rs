//! One batch's invocation: the function's environment, a workspace holding each event (and
//! the object it is about, read as a table where `basin import` would read it), and the
//! call into the runtime, metered.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use basin_catalog::EventRecord;
use basin_core::{Error, Result};
use basin_runtime::{Finished, Invocation, Limits, Target};

use super::{BATCH_MARGIN, Dispatcher, timeout};
use crate::deployed::DeployedFunction;
use crate::functions::env_spec;

impl Dispatcher {
    pub(super) async fn invoke(
        &self,
        function: &DeployedFunction,
        events: &[EventRecord],
        logs: Arc<Mutex<basin_runtime::OutputLog>>,
    ) -> Result<Finished> {
        let runtime = self.lakehouse.runtime()?;
        let declaration = &function.declaration;
        let spec = env_spec(declaration, None, &Default::default(), &[]);
        let env = runtime.environment(&spec).await?;
        let preload = declaration.preload(&spec);
        runtime.warm(&env, &preload, declaration.internet);
        let mut workspace = runtime.workspace()?;
        // Objects in an S3 bucket are fetched 16 at a time.
        let mut objects: Vec<Result<Option<Fetched>>> = Vec::with_capacity(events.len());
        for chunk in events.chunks(16) {
            let fetches = chunk.iter().map(|event| self.object(function, event));
            objects.extend(futures::future::join_all(fetches).await);
        }
        // One SQL session on the watched branch for every commit event of the batch.
        let mut session = None;
        for (event, object) in events.iter().zip(objects) {
            let object = object?;
            let attached = match &object {
                Some(Fetched::File(path)) => Some(basin_runtime::Object::File(path)),
                Some(Fetched::Bytes(bytes)) => Some(basin_runtime::Object::Bytes(bytes)),
                None => None,
            };
            workspace.add_event(event.payload.clone(), attached)?;
            attach_table(&mut workspace, event).await?;
            self.attach_changes(&mut workspace, function, event, &mut session)
                .await?;
        }
        let per_event = timeout(function);
        let invocation = Invocation {
            function: function.name.clone(),
            target: Target::Python {
                file: declaration.file.clone(),
                name: function.name.clone(),
                source: function.source.clone(),
            },
            env,
            preload,
            event: serde_json::Value::Null,
            params: serde_json::Value::Null,
            secrets: crate::functions::secrets_for(
                declaration,
                &[],
                &self.lakehouse.settings().secrets,
            )?,
            limits: Limits {
                // The worker stops a call at `per_event`; this stops a worker that hangs.
                timeout: Some(per_event * events.len() as u32 + BATCH_MARGIN),
                per_event: Some(per_event),
                memory_bytes: declaration.memory_bytes,
                internet: declaration.internet,
                fresh: declaration.reuse == Some(false),
            },
            concurrency: declaration.concurrency,
        };
        let sink: basin_runtime::OutputSink = Arc::new(move |_, line: &str| {
            logs.lock().expect("not poisoned").push(line);
        });
        // Metered by the caller (`Tried::invocations`).
        Ok(runtime.invoke(workspace, invocation, sink).await)
    }

    /// The object an object event is about: a file in the embedded default's bucket
    /// folders, or the bytes of an object in an S3 bucket.
    async fn object(
        &self,
        function: &DeployedFunction,
        event: &EventRecord,
    ) -> Result<Option<Fetched>> {
        let Some(basin_runtime::Trigger::Object { bucket, .. }) = function.trigger() else {
            return Ok(None);
        };
        let Some(key) = event.payload.get("key").and_then(|k| k.as_str()) else {
            return Ok(None);
        };
        let buckets = self.lakehouse.buckets();
        Ok(Some(match buckets.s3(bucket) {
            Some(s3) => Fetched::Bytes(buckets.read_s3_object(s3, key).await?),
            None => {
                let dir = buckets.folder(bucket);
                let path = dir.join(key);
                // Queued as a plain file, but it could have been swapped for a link since.
                if let Some(link) = crate::links::symlink_under(&dir, &path) {
                    return Err(Error::invalid(format!(
                        "{} is a symbolic link; links in a bucket are not followed",
                        link.display()
                    ))
                    .with_hint(
                        "put the file itself into the bucket: `basin put FILE BUCKET/KEY`",
                    ));
                }
                Fetched::File(path)
            }
        }))
    }
}

impl Dispatcher {
    /// Reads an `@basin.on_commit` event's changed rows (`table_changes` between the event's
    /// snapshots, on its branch, with the deployer's grants: the batch runs as the deployer)
    /// for `context.changes()`. Rows that cannot be read fail only a `changes()` call, with
    /// the reason. `session` is made by the batch's first commit event.
    async fn attach_changes(
        &self,
        workspace: &mut basin_runtime::Workspace,
        function: &DeployedFunction,
        event: &EventRecord,
        session: &mut Option<basin_sql::Session>,
    ) -> Result<()> {
        let Some(basin_runtime::Trigger::Commit { table, branch }) = function.trigger() else {
            return Ok(());
        };
        let snapshot = |side: &str| match event.payload[side].as_str() {
            Some(id) => id.to_string(),
            None => basin_sql::BEFORE_THE_TABLE.to_string(),
        };
        let sql = format!(
            "SELECT * FROM table_changes('{table}', '{}', '{}')",
            snapshot("from_snapshot"),
            snapshot("to_snapshot")
        );
        let read = async {
            if session.is_none() {
                let lake = &self.lakehouse;
                let at = lake.catalog().resolve(branch).await?;
                *session = Some(
                    basin_sql::Session::plain_strings(lake.sql(), lake.iceberg_tables(), &at, None)
                        .await?,
                );
            }
            session.as_ref().expect("made above").stream(&sql).await
        };
        match read.await {
            Ok((schema, batches)) => workspace.attach_event_table(schema, batches).await,
            Err(e) => {
                workspace.attach_object_table(Err(format!(
                    "cannot read the changes of `{table}` on `{branch}`: {}",
                    e.message
                )));
                Ok(())
            }
        }
    }
}

/// Reads the last added event's object as `basin import` would (CSV and JSON objects, by
/// their key's suffix), so that `context.read_table()` sees the types an import infers. A file
/// that cannot be read fails only a `read_table()` call, with the import's message (a
/// function that reads the bytes itself still runs).
async fn attach_table(workspace: &mut basin_runtime::Workspace, event: &EventRecord) -> Result<()> {
    let key = event.payload.get("key").and_then(|k| k.as_str());
    let (Some(object), Some(key)) = (workspace.last_object(), key) else {
        return Ok(());
    };
    let Some(format) = basin_ingest::text_format(key) else {
        return Ok(());
    };
    let (object, key) = (object.to_path_buf(), key.to_string());
    let read = tokio::task::spawn_blocking(move || {
        let dest = object.with_extension("arrow");
        basin_ingest::to_arrow_file(&object, &key, format, &dest).map(|_| dest)
    })
    .await
    .map_err(|e| Error::internal(format!("reading the object as a table: {e}")))?;
    // The message names the key and line; the import's hints speak of its flags.
    workspace.attach_object_table(read.map_err(|e| e.message));
    Ok(())
}

/// An object to hand to the handler.
enum Fetched {
    File(PathBuf),
    Bytes(Vec<u8>),
}
