//! An invocation's folder in shared memory: the socket, the input tables Basin writes, the
//! output table the function writes, and the function's private working directory. Removed,
//! with everything in it, when the invocation's result is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use basin_core::{Error, Result};
use futures::{Stream, StreamExt};

use crate::files::{Lease, arrow_error, file_bytes, give_back_or_remove, read_output};
use crate::ipc::IpcWriter;
use crate::pool::Pool;
use crate::protocol::{BatchEvent, OutputLocation, TableFile};
use crate::scratch::{Folder, io, private_folder};

pub(crate) const FORMAT: &str = "arrow-ipc-file";

/// The object an event is about: a file Basin may read, or bytes it fetched.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

#[derive(Debug)]
pub struct Workspace {
    pub(crate) id: String,
    pub(crate) dir: PathBuf,
    pub(crate) inputs: BTreeMap<String, TableFile>,
    /// A batch's events (empty: one call with the invocation's event).
    pub(crate) batch: Vec<BatchEvent>,
    /// Shared memory already allocated, for the tables written here.
    pub(crate) pool: Option<Arc<Pool>>,
    /// Files that go back to the pool when the folder is removed: set once every process of
    /// the invocation has ended, so none can still read or write them.
    pub(crate) give_back: Mutex<Vec<PathBuf>>,
    /// Bytes of the output files Basin read (tables the function returned).
    bytes_out: AtomicU64,
    /// Of those, bytes that lay in the inputs (`references.rs`).
    bytes_by_reference: AtomicU64,
    /// Output files mapped as results: they go back to the pool (see `Lease`).
    leases: Mutex<Vec<(PathBuf, Arc<Mutex<Lease>>)>>,
    /// Inputs read again for tables that lie in them (`input_bytes`), by name.
    read_inputs: Mutex<BTreeMap<String, Buffer>>,
    /// The caller reads the returned table's batches only (`tables_by_reference`).
    pub(crate) by_reference: bool,
    /// The kept process's folder this one was moved into (`relocate`), removed after it.
    parent: Option<Arc<Folder>>,
}

/// Writes `batches` into `file` as an Arrow IPC file; returns the rows and bytes written.
async fn write_stream<S>(
    file: File,
    name: &str,
    schema: &SchemaRef,
    batches: &mut S,
) -> Result<(u64, u64)>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    let mut writer =
        IpcWriter::try_new(file, schema).map_err(arrow_error(format!("input `{name}`")))?;
    let mut rows = 0u64;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .map_err(arrow_error(format!("input `{name}`")))?;
    }
    let (_, bytes) = writer
        .finish()
        .map_err(arrow_error(format!("input `{name}`")))?;
    Ok((rows, bytes))
}

impl Workspace {
    pub(crate) fn create(scratch: &Path, pool: Option<Arc<Pool>>) -> Result<Self> {
        let id = basin_core::ids::ordered();
        let dir = scratch.join(&id);
        private_folder(&dir.join("work"))?;
        Ok(Self {
            id,
            dir,
            inputs: BTreeMap::new(),
            batch: Vec::new(),
            pool,
            give_back: Mutex::new(Vec::new()),
            bytes_out: AtomicU64::new(0),
            bytes_by_reference: AtomicU64::new(0),
            leases: Mutex::new(Vec::new()),
            read_inputs: Mutex::new(BTreeMap::new()),
            by_reference: false,
            parent: None,
        })
    }

    /// Moves the folder, with the inputs and objects written so far, into `parent`: the
    /// folder of the kept process that runs the invocation, the one place its walls let it
    /// write.
    pub(crate) fn relocate(&mut self, parent: Arc<Folder>) -> Result<()> {
        let dir = parent.path().join(&self.id);
        std::fs::rename(&self.dir, &dir).map_err(io(format!(
            "cannot move {} into {}",
            self.dir.display(),
            parent.path().display()
        )))?;
        let old = std::mem::replace(&mut self.dir, dir);
        let moved = |path: &mut PathBuf| {
            if let Ok(rest) = path.strip_prefix(&old) {
                *path = self.dir.join(rest);
            }
        };
        self.inputs.values_mut().for_each(|t| moved(&mut t.path));
        for event in &mut self.batch {
            event.object.iter_mut().for_each(moved);
            event.object_table.iter_mut().for_each(moved);
            moved(&mut event.output.path);
        }
        self.parent = Some(parent);
        Ok(())
    }

    /// Bytes of the tables the function wrote for Basin (its output files, as they are now).
    pub(crate) fn output_bytes(&self) -> u64 {
        let size = |p: PathBuf| std::fs::symlink_metadata(p).map_or(0, |m| m.len());
        let items = (0..self.batch.len()).map(|i| size(self.item_output_path(i)));
        size(self.output_path()) + items.sum::<u64>()
    }

    /// Lets the function hand back batches of its inputs by reference instead of copying
    /// them into its output file (`references.rs`), for a caller that reads the returned
    /// table's batches only: its output file then need not hold the whole table, and
    /// `Finished::output_file` gives none. Not for batches of events.
    pub fn tables_by_reference(&mut self) {
        self.by_reference = true;
    }

    /// The invocation's id (also the metering record's).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file holding the input `name`, once written.
    pub fn input_path(&self, name: &str) -> Option<&Path> {
        self.inputs.get(name).map(|t| t.path.as_path())
    }

    pub(crate) fn workdir(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("basin.sock")
    }

    pub(crate) fn output_path(&self) -> PathBuf {
        self.dir.join("output.arrow")
    }

    /// Writes the input `name` (a parameter of the function) as an Arrow IPC file.
    pub async fn write_input<S>(
        &mut self,
        name: &str,
        schema: SchemaRef,
        mut batches: S,
    ) -> Result<&TableFile>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin,
    {
        let path = self.dir.join(format!("input-{}.arrow", self.inputs.len()));
        // A file from the pool is written over from its first byte and cut to length after.
        let pooled = self.pool.as_ref().and_then(|p| p.take_for_input(&path));
        let file = match pooled {
            Some(file) => file,
            None => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io(format!("cannot create {}", path.display())))?,
        };
        let (rows, bytes) = write_stream(file, name, &schema, &mut batches).await?;
        let table = TableFile {
            path,
            format: FORMAT.into(),
            rows,
            bytes,
        };
        self.inputs.insert(name.to_string(), table);
        Ok(&self.inputs[name])
    }

    /// Gives the last added event a table Basin read for it (an `@basin.on_commit` event's
    /// changed rows), written as an Arrow IPC file in this folder: `context.changes()` reads
    /// it.
    pub async fn attach_event_table<S>(&mut self, schema: SchemaRef, mut batches: S) -> Result<()>
    where
        S: Stream<Item = Result<RecordBatch>> + Unpin,
    {
        let i = self.batch.len().saturating_sub(1);
        let path = self.dir.join(format!("event-table-{i}.arrow"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(format!("cannot create {}", path.display())))?;
        write_stream(file, "the event's table", &schema, &mut batches).await?;
        self.attach_object_table(Ok(path));
        Ok(())
    }

    /// Adds an event to the invocation's batch: the handler is called once per event, in one
    /// process. The object the event is about, if any, is copied into the invocation's
    /// folder: the function cannot open Basin's folders, so it reads the copy
    /// (`context.read_bytes()`, `read_table()`).
    pub fn add_event(
        &mut self,
        event: serde_json::Value,
        object: Option<Object<'_>>,
    ) -> Result<()> {
        let i = self.batch.len();
        let object = match object {
            Some(object) => {
                let path = self.dir.join(format!("object-{i}"));
                match object {
                    Object::File(source) => std::fs::copy(source, &path)
                        .map(drop)
                        .map_err(io(format!("cannot read {}", source.display())))?,
                    Object::Bytes(bytes) => std::fs::write(&path, bytes)
                        .map_err(io(format!("cannot write {}", path.display())))?,
                }
                Some(path)
            }
            None => None,
        };
        self.batch.push(BatchEvent {
            event,
            object,
            object_table: None,
            object_table_error: None,
            output: OutputLocation {
                path: self.item_output_path(i),
                format: FORMAT,
                by_reference: false,
            },
        });
        Ok(())
    }

    /// The copy of the last added event's object, if it has one.
    pub fn last_object(&self) -> Option<&Path> {
        self.batch.last()?.object.as_deref()
    }

    /// Gives the last added event its object read as a table (an Arrow IPC file Basin wrote
    /// in this folder), or why it could not be read: `context.read_table()` returns the one
    /// or raises the other.
    pub fn attach_object_table(&mut self, table: std::result::Result<PathBuf, String>) {
        if let Some(event) = self.batch.last_mut() {
            match table {
                Ok(path) => event.object_table = Some(path),
                Err(e) => event.object_table_error = Some(e),
            }
        }
    }

    /// Where the batch's `i`th call writes its table.
    pub(crate) fn item_output_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("output-{i}.arrow"))
    }

    /// Reads the table the function wrote at `path` (mapped when `map`), counting its bytes;
    /// a mapped file goes back to the pool once the folder and every batch are gone.
    pub(crate) fn read_table(
        &self,
        path: &Path,
        map: bool,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (schema, batches, bytes) =
            self.leased(path, map, |lease| read_output(path, map, lease))?;
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        Ok((schema, batches))
    }

    /// Runs `read` on the file at `path` with a lease from the pool when it is mapped; once
    /// it succeeds, the file goes back to the pool only when the folder and every batch over
    /// it are gone, never with the folder's other files. Only a file read whole is leased:
    /// one refused (a link, not a regular file) is removed with the folder.
    fn leased<T>(
        &self,
        path: &Path,
        map: bool,
        read: impl FnOnce(Option<(&Arc<Pool>, Arc<Mutex<Lease>>)>) -> Result<T>,
    ) -> Result<T> {
        let lease = match (&self.pool, map) {
            (Some(pool), true) => Some((pool, Arc::new(Mutex::new(Lease::default())))),
            _ => None,
        };
        let held = lease.as_ref().map(|(_, lease)| lease.clone());
        let read = read(lease)?;
        if let Some(lease) = held {
            let mut back = self.give_back.lock().expect("give_back");
            back.retain(|p| p != path);
            let mut leases = self.leases.lock().expect("leases");
            leases.push((path.to_path_buf(), lease));
        }
        Ok(read)
    }

    /// The input `name`'s file, for the batches a function handed back by reference
    /// (`references.rs`): mapped when `map` and then leased like a mapped output (it no longer
    /// goes back to the pool with the folder, but once unmapped too), read into memory
    /// otherwise. Read once per invocation.
    pub(crate) fn input_bytes(&self, name: &str, map: bool) -> Result<Buffer> {
        let mut read = self.read_inputs.lock().expect("read_inputs");
        if let Some(bytes) = read.get(name) {
            return Ok(bytes.clone());
        }
        let table = self
            .inputs
            .get(name)
            .ok_or_else(|| Error::invalid(format!("the invocation has no input `{name}`")))?;
        let path = &table.path;
        let what = || format!("the input `{name}` ({})", path.display());
        let bytes = self.leased(path, map, |lease| file_bytes(path, map, lease, &what))?;
        read.insert(name.to_string(), bytes.clone());
        Ok(bytes)
    }

    /// Counts bytes of a returned table that lie in the inputs.
    pub(crate) fn add_bytes_by_reference(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.bytes_by_reference.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of the returned tables that lay in the inputs.
    pub(crate) fn bytes_by_reference(&self) -> u64 {
        self.bytes_by_reference.load(Ordering::Relaxed)
    }

    /// Bytes of the tables the function returned.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    pub(crate) fn rows_and_bytes_in(&self) -> (u64, u64) {
        self.inputs
            .values()
            .fold((0, 0), |(r, b), t| (r + t.rows, b + t.bytes))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            for path in self.give_back.get_mut().expect("give_back").drain(..) {
                pool.give_back(&path);
            }
            for (path, lease) in self.leases.get_mut().expect("leases").drain(..) {
                let mut lease = lease.lock().expect("lease");
                if lease.unmapped {
                    give_back_or_remove(pool, &path);
                } else {
                    lease.waiting = pool.lease(&path);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array};

    use super::*;
    use crate::files::write_ipc_file;
    use crate::options::RuntimeCounters;

    /// A workspace whose function "wrote" a table at its output path.
    fn with_output(dir: &Path, pool: &Arc<Pool>) -> (Workspace, PathBuf) {
        let ws = Workspace::create(dir, Some(pool.clone())).unwrap();
        let batch = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from_iter_values(0..100_000)) as ArrayRef,
        )])
        .unwrap();
        let path = ws.output_path();
        write_ipc_file(&path, &batch.schema(), &[batch]).unwrap();
        (ws, path)
    }

    #[test]
    fn a_mapped_output_goes_back_to_the_pool_once_unmapped_and_out_of_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(Pool::new(
            dir.path().join("pool"),
            64 << 20,
            Arc::new(RuntimeCounters::default()),
        ));
        // The batches outlive the folder: the file waits in the pool's folder until they go.
        let (ws, path) = with_output(dir.path(), &pool);
        let (_, batches) = ws.read_table(&path, true).unwrap();
        assert_eq!(ws.bytes_out(), std::fs::metadata(&path).unwrap().len());
        drop(ws);
        assert!(!path.exists());
        assert_eq!(pool.counts(), (0, 0));
        assert_eq!(batches[0].num_rows(), 100_000, "still mapped");
        drop(batches);
        assert_eq!(pool.counts(), (0, 1));

        // The folder outlives the batches: the file goes back with the folder.
        let (ws, path) = with_output(dir.path(), &pool);
        drop(ws.read_table(&path, true).unwrap());
        assert!(path.exists(), "the folder keeps it while it is there");
        drop(ws);
        assert_eq!(pool.counts(), (0, 2));

        // Read into memory (not every process of the invocation was seen to end): never back.
        let (ws, path) = with_output(dir.path(), &pool);
        drop(ws.read_table(&path, false).unwrap());
        drop(ws);
        assert_eq!(pool.counts(), (0, 2));
    }
}
