//! Who acts, and through which door: the author a commit records.
//!
//! A door sets it once where a request enters (`basin serve`'s HTTP middleware, a Postgres
//! connection's statements, a function's invocation; the CLI for `--bypass-protection`) with
//! [`scope`], and [`CommitRequest::new`](crate::CommitRequest::new) reads it, so the dozen
//! places that write a commit need not carry the caller through every layer between. It is a
//! task-local, not a global: work spawned onto another task starts with no actor, and its
//! commits fall back to the catalog's default author (the local user, door `local`).
//!
//! It carries authorship, the principal's grants (which the catalog applies to every read and
//! commit, [`crate::access`]) and one permission an admin asked for explicitly
//! (`bypass_protection`).

use std::future::Future;
use std::sync::Arc;

use crate::grants::Grants;

/// The door of work done by this process for its own user: a CLI command, or `basin serve`'s
/// background work (maintenance, schedules).
pub const LOCAL_DOOR: &str = "local";

/// Who acts, and through which door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, a function's deployer, ...; `None`: the local user (`[user] name`,
    /// `BASIN_AUTHOR` or the login name), which the catalog fills in.
    pub principal: Option<String>,
    /// The id of the token it acts with (`oidc:SUBJECT` for a sign-in); `None`: no token
    /// (the local user, `--no-auth`, a function). What per-token limits count by: names
    /// may be empty and shared.
    pub token_id: Option<String>,
    /// `api`, `console`, `iceberg-rest`, `postgres`, `function`, `local`.
    pub door: &'static str,
    /// An admin asked to write to protected branches directly (`--bypass-protection`).
    pub bypass_protection: bool,
    /// What the principal may read and write (`None`: everything, the local user);
    /// the catalog applies them at every read and commit ([`crate::access`]).
    pub grants: Option<Arc<Grants>>,
}

impl Actor {
    pub fn new(principal: impl Into<String>, door: &'static str) -> Self {
        Self {
            principal: Some(principal.into()),
            token_id: None,
            door,
            bypass_protection: false,
            grants: None,
        }
    }

    /// The local user, through the CLI.
    pub fn local() -> Self {
        Self {
            principal: None,
            token_id: None,
            door: LOCAL_DOOR,
            bypass_protection: false,
            grants: None,
        }
    }
}

tokio::task_local! {
    static ACTOR: Actor;
}

/// Runs `work` with `actor` acting.
pub async fn scope<F: Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// Runs `work` with `actor` acting, if there is one: how work a request spawns onto other
/// tasks (a pipeline's models) keeps acting as the request's principal, with
/// `carried(current(), work)`.
pub async fn carried<F: Future>(actor: Option<Actor>, work: F) -> F::Output {
    match actor {
        Some(actor) => scope(actor, work).await,
        None => work.await,
    }
}

/// Who acts in this task, if a door said so.
pub fn current() -> Option<Actor> {
    ACTOR.try_with(Clone::clone).ok()
}
