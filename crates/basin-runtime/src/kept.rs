//! Kept children (`[functions] reuse`): once a function's confined child has answered, it
//! waits on its connection for the next invocation of the same function version with the
//! same environment, limits and secrets, as AWS Lambda reuses an execution environment for
//! the next call of one function version. Its walls stay up and its module stays loaded (its
//! globals persist); between two invocations it ends every other process of its PID
//! namespace (python/basin/_worker.py). A child that timed out, crashed, broke a limit or
//! handed over a table too large to copy is never kept (`runtime/run.rs`; the next
//! invocation is started in it by `runtime/warm.rs`); an idle one ends after
//! `[functions] keep_warm_seconds`, and any after `max_uses` invocations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::cgroup::Group;
use crate::invocation::{Invocation, Target};
use crate::monitor::end;
use crate::options::RuntimeCounters;
use crate::scratch::Folder;
use crate::zygote::{Forked, Zygote};

/// A child that may be kept once its invocation ends: under which key, its connection once
/// its reply is read, its folder, and how many invocations it served before this one.
pub(crate) struct Keeping {
    pub(crate) key: String,
    pub(crate) stream: oneshot::Receiver<UnixStream>,
    pub(crate) folder: Arc<Folder>,
    pub(crate) uses: u64,
}

/// A kept child between two invocations. It holds its worker busy (`Zygote::begin`), so
/// the worker outlives it.
pub(crate) struct Lease {
    pub(crate) zygote: Arc<Zygote>,
    pub(crate) forked: Forked,
    pub(crate) folder: Arc<Folder>,
    pub(crate) group: Option<Group>,
    pub(crate) stream: UnixStream,
    /// Invocations it has served.
    pub(crate) uses: u64,
    /// Why it runs without a memory group (best-effort), said on each invocation.
    pub(crate) ungrouped: Option<String>,
    idle_since: Instant,
}

impl Lease {
    /// A child kept once its invocation ended: `keeping` says where, `stream` is its
    /// connection, `group` its memory group. It holds its worker busy until it retires.
    pub(crate) fn new(
        zygote: Arc<Zygote>,
        (forked, group): (Forked, Option<Group>),
        keeping: Keeping,
        stream: UnixStream,
        ungrouped: Option<String>,
    ) -> (String, Self) {
        let lease = Self {
            zygote,
            forked,
            folder: keeping.folder,
            group,
            stream,
            uses: keeping.uses + 1,
            ungrouped,
            idle_since: Instant::now(),
        };
        (keeping.key, lease)
    }

    /// Ends the child and everything of it: its PID namespace, its process group and its
    /// memory group; its folder goes once no invocation's folder in it is held any more.
    pub(crate) fn retire(self) {
        drop(end(self.forked, None));
        self.zygote.end();
    }
}

/// The kept children waiting for an invocation, by key, at most `max` of them.
pub(crate) struct Kept {
    idle: Mutex<HashMap<String, Vec<Lease>>>,
    max: usize,
    /// `kept_processes` is kept equal to the count here.
    counters: Arc<RuntimeCounters>,
}

impl Kept {
    pub(crate) fn new(max: usize, counters: Arc<RuntimeCounters>) -> Self {
        Self {
            idle: Mutex::default(),
            max,
            counters,
        }
    }

    /// Publishes how many children are kept (`basin_function_kept_processes`).
    fn counted(&self, idle: &HashMap<String, Vec<Lease>>) {
        let n = idle.values().map(Vec::len).sum::<usize>();
        self.counters
            .kept_processes
            .store(n as u64, Ordering::Relaxed);
    }

    /// The child kept last under `key` that is still alive; the dead ones found on the way
    /// are retired.
    pub(crate) fn take(&self, key: &str) -> Option<Lease> {
        let mut dead = Vec::new();
        let found = {
            let mut idle = self.idle.lock().expect("kept");
            let leases = idle.get_mut(key)?;
            let found = loop {
                match leases.pop() {
                    Some(lease) if lease.zygote.has_child(lease.forked.pid) => break Some(lease),
                    Some(lease) => dead.push(lease),
                    None => break None,
                }
            };
            if leases.is_empty() {
                idle.remove(key);
            }
            self.counted(&idle);
            found
        };
        dead.into_iter().for_each(Lease::retire);
        found
    }

    /// Keeps `lease` under `key`; past `max` kept children (`[functions] max_kept`), the one
    /// idle longest retires (with `max` 0, this one).
    pub(crate) fn put(&self, key: String, lease: Lease) {
        let lease = Lease {
            idle_since: Instant::now(),
            ..lease
        };
        let mut retired = Vec::new();
        {
            let mut idle = self.idle.lock().expect("kept");
            idle.entry(key).or_default().push(lease);
            let mut kept = idle.values().map(Vec::len).sum::<usize>();
            while kept > self.max {
                let oldest = idle
                    .iter()
                    .filter_map(|(k, leases)| Some((k.clone(), leases.first()?.idle_since)))
                    .min_by_key(|(_, since)| *since)
                    .map(|(k, _)| k);
                let Some(oldest) = oldest else { break };
                let leases = idle.get_mut(&oldest).expect("found above");
                retired.push(leases.remove(0));
                kept -= 1;
                if leases.is_empty() {
                    idle.remove(&oldest);
                }
            }
            self.counted(&idle);
        }
        retired.into_iter().for_each(Lease::retire);
    }

    /// Retires the children idle for `keep_warm`; returns how long until the next one would
    /// be (None: none is kept).
    pub(crate) fn expire(&self, keep_warm: Duration) -> Option<Duration> {
        let mut retired = Vec::new();
        let mut next: Option<Duration> = None;
        {
            let mut idle = self.idle.lock().expect("kept");
            for leases in idle.values_mut() {
                let (old, young): (Vec<_>, Vec<_>) = std::mem::take(leases)
                    .into_iter()
                    .partition(|l| l.idle_since.elapsed() >= keep_warm);
                retired.extend(old);
                for lease in &young {
                    let left = keep_warm.saturating_sub(lease.idle_since.elapsed());
                    next = Some(next.map_or(left, |n| n.min(left)));
                }
                *leases = young;
            }
            idle.retain(|_, leases| !leases.is_empty());
            self.counted(&idle);
        }
        retired.into_iter().for_each(Lease::retire);
        next
    }

    /// Retires every kept child.
    pub(crate) fn clear(&self) {
        let all: Vec<Lease> = {
            let mut idle = self.idle.lock().expect("kept");
            let all = idle.drain().flat_map(|(_, leases)| leases).collect();
            self.counted(&idle);
            all
        };
        all.into_iter().for_each(Lease::retire);
    }

    /// How many children are kept now (the gauge `counted` keeps).
    pub(crate) fn count(&self) -> usize {
        self.counters.kept_processes.load(Ordering::Relaxed) as usize
    }
}

/// A new kept child's folder name in the runtime's scratch folder: short, as the sockets of
/// the invocations inside it must stay under the 108 bytes of a Unix socket's path.
pub(crate) fn folder_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("k{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What two invocations must share for the second to run in the first's kept child: the
/// function's version (its name, file and source), its environment, its limits and walls
/// (the internet, the memory limit) and its grants (the secrets, names and values).
pub(crate) fn key(inv: &Invocation, memory_limit: u64) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(inv.function.as_bytes());
    if let Target::Python { file, name, source } = &inv.target {
        field(file.as_os_str().as_encoded_bytes());
        field(name.as_bytes());
        field(source.as_bytes());
    }
    field(inv.env.hash.as_bytes());
    field(&[u8::from(inv.limits.internet)]);
    field(&memory_limit.to_le_bytes());
    field(&serde_json::to_vec(&inv.secrets).unwrap_or_default());
    format!("{:x}", hash.finalize())
}
