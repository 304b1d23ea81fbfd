//! The lakehouse as code: a declaration in basin.toml (`spec`), compared with the
//! lakehouse and the state of the last apply (`planner`, `others`, `table`, `schema`,
//! `state`) into a plan (`plan`), carried out (`apply`) or written from the lakehouse
//! (`export`). See docs/declarative.md.

mod apply;
mod export;
mod handle;
mod others;
mod plan;
mod planner;
mod schema;
mod spec;
mod state;
mod table;

pub use apply::DECLARED_PROPERTY;
pub use handle::Declared;
pub use plan::{Action, Change, Kind, NewToken, Plan};
pub use spec::Declaration;
