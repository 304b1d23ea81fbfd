//! Starting an invocation in a child kept from the last invocation of the same function
//! version (`crate::kept`), and which invocations may be.

use basin_core::{Error, Result};
use tokio::sync::oneshot;

use super::Runtime;
use super::run::{Door, Ending, Started, child_env, request};
use crate::invocation::{Invocation, Target};
use crate::kept::{Keeping, Lease};
use crate::options::RuntimeCounters;
use crate::protocol::Again;
use crate::talk::Talk;
use crate::workspace::Workspace;

impl Runtime {
    /// Whether `inv` may run in a kept child (and its child be kept): reuse is on, for the
    /// runtime and the function; it is a Python function (a program execs, and cannot be
    /// sent a second request); and the child has a PID namespace of its own, whose other
    /// processes it can end between two invocations.
    pub(super) fn reusable(&self, inv: &Invocation) -> bool {
        self.inner.options.reuse
            && !inv.limits.fresh
            && matches!(inv.target, Target::Python { .. })
            && self.inner.walls.holds("processes")
    }

    /// Starts `inv` in a kept child: its folder moves into the child's, and the message for
    /// the child's connection is its working directory and environment, its secrets and the
    /// request.
    pub(super) fn start_again(
        &self,
        ws: &mut Workspace,
        inv: &Invocation,
        lease: Lease,
        key: String,
    ) -> Result<Started> {
        let message = match ws
            .relocate(lease.folder.clone())
            .and_then(|()| again_message(ws, inv))
        {
            Ok(message) => message,
            Err(e) => {
                lease.retire();
                return Err(e);
            }
        };
        let options = &self.inner.options;
        RuntimeCounters::count(&options.counters.warm_reused);
        let Lease {
            zygote,
            forked,
            folder,
            group,
            stream,
            uses,
            ungrouped,
            ..
        } = lease;
        let exit_rx = zygote.rewatch(forked.pid, &ws.id);
        self.inner
            .running
            .lock()
            .expect("running")
            .insert(forked.pid);
        let (keep_tx, keep_rx) = oneshot::channel();
        Ok(Started {
            door: Door::Kept(stream, message),
            forked,
            exit_rx: Some(exit_rx),
            guard: Ending {
                pid: forked.pid,
                zygote,
                inner: self.inner.clone(),
                group,
                keep: false,
            },
            ungrouped,
            talk: Talk {
                request: Vec::new(),
                secrets: Vec::new(),
                program: false,
                max_reply: options.max_reply_size,
                counters: options.counters.clone(),
                keep: Some(keep_tx),
            },
            keeping: Some(Keeping {
                key,
                stream: keep_rx,
                folder,
                uses,
            }),
        })
    }
}

/// A kept child's next invocation, as sent on its connection: where it runs and its
/// environment (`protocol::Again`), its secrets, the request; a line each.
fn again_message(ws: &Workspace, inv: &Invocation) -> Result<Vec<u8>> {
    let workdir = ws.workdir();
    let env = child_env(inv, &workdir);
    let again = Again {
        invocation: &ws.id,
        env: &env,
        workdir: &workdir,
    };
    let mut message = serde_json::to_vec(&again)
        .map_err(|e| Error::internal(format!("a kept child's message: {e}")))?;
    message.push(b'\n');
    message.extend(
        serde_json::to_vec(&inv.secrets).map_err(|e| Error::internal(format!("secrets: {e}")))?,
    );
    message.push(b'\n');
    message.extend(request(ws, inv)?);
    message.push(b'\n');
    Ok(message)
}
