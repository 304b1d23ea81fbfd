//! Basin's function runtime. So far: environments (a Python version plus pinned packages),
//! built once with `uv`, keyed by a hash of their spec, and reused by every later run.
//!
//! ```no_run
//! # async fn demo() -> basin_catalog::Result<()> {
//! use basin_runtime::{EnvCache, EnvSpec};
//! let cache = EnvCache::new("/tmp/lh/.basin/envs", "/tmp/lh/.basin/tools");
//! let spec = EnvSpec::new("3.11").with_package("six", "1.16.0");
//! let env = cache.resolve(&spec).await?; // builds the first time, then a lookup
//! println!("{}", env.python.display());
//! # Ok(()) }
//! ```

mod env;
mod sdk;
mod uv;

pub use env::{Env, EnvCache, EnvInfo, EnvSpec};
