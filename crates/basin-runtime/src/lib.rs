//! Basin's function runtime: environments (a Python version plus pinned packages) built once
//! with `uv` and reused; a warm fork server per environment; a confined child per invocation
//! (kept for the next invocation of the same function version), talking to Basin over a Unix
//! socket with tables as Arrow IPC files in shared memory (docs/protocol.md); timeouts and
//! memory limits enforced from outside; metering.
//!
//! ```no_run
//! # async fn demo() -> basin_core::Result<()> {
//! use basin_runtime::{EnvCache, EnvSpec};
//! let cache = EnvCache::new("/tmp/cache/basin/envs", "/tmp/cache/basin/tools");
//! let spec = EnvSpec::new("3.11").with_package("six", "1.16.0");
//! let env = cache.resolve(&spec).await?; // builds the first time, then a lookup
//! println!("{}", env.python.display());
//! # Ok(()) }
//! ```

mod cgroup;
mod declaration;
mod env;
mod files;
mod invocation;
mod ipc;
mod kept;
mod monitor;
mod options;
mod output;
mod pool;
mod protocol;
mod references;
mod reply;
mod runtime;
mod scratch;
mod sdk;
mod talk;
mod uv;
mod walls;
mod workspace;
mod zygote;

pub use declaration::{Declaration, ModelInput, Trigger, read_declarations};
pub use env::{Env, EnvCache, EnvInfo, EnvSpec};
pub use files::{read_ipc_file, write_ipc, write_ipc_file};
pub use invocation::{Finished, Invocation, Item, Output, OutputSink, Target};
pub use options::{
    COPY_OUTPUTS_BELOW, DEFAULT_MEMORY, DEFAULT_NICE, DEFAULT_TIMEOUT, Limits, RuntimeCounters,
    RuntimeOptions,
};
pub use output::OutputLog;
pub use protocol::{Stream, TableFile, UserError};
pub use runtime::Runtime;
pub use walls::{Isolation, WALL_NAMES, Wall, Walls};
pub use workspace::{Object, Workspace};

/// The SDK as a folder any `python3` can import (written under `tools` once per SDK version).
pub fn sdk_folder(tools: &std::path::Path) -> basin_core::Result<std::path::PathBuf> {
    sdk::materialize(tools)
}
