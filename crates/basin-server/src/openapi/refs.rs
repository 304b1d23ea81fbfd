//! Refs: branches, tags, merges, the log and diffs between refs.

use axum::http::Method;
use axum::routing::{delete, get, post};
use basin_service::Role;

use super::endpoint::{Endpoint, REF};
use crate::api;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let mut all = refs();
    all.extend(history());
    all
}

/// Branches and tags, and merging them.
fn refs() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/refs",
            role: reader,
            summary: "Branches and tags, with their heads",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(api::refs),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/branches",
            role: writer,
            summary: "Create a branch (201)",
            query: &[],
            body: &[
                ("name", "string", "the new branch"),
                ("from", "string", "where it starts (default: main)"),
            ],
            errors: &[(409, "the name is taken"), (404, "`from` does not exist")],
            handler: || post(api::create_branch),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/branches/{name}",
            role: writer,
            summary: "Delete a branch (not `main`); its commits stay reachable from other refs",
            query: &[],
            body: &[],
            errors: &[(404, "no such branch"), (400, "`main` cannot be deleted")],
            handler: || delete(api::delete_branch),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/tags",
            role: writer,
            summary: "Tag a commit (201); a tag never moves",
            query: &[],
            body: &[
                ("name", "string", "the new tag"),
                (
                    "at",
                    "string",
                    "a branch, tag or REF@COMMIT (default: main)",
                ),
            ],
            errors: &[(409, "the name is taken"), (404, "`at` does not exist")],
            handler: || post(api::create_tag),
        },
        Endpoint {
            method: Method::DELETE,
            path: "/api/v1/tags/{name}",
            role: writer,
            summary: "Delete a tag",
            query: &[],
            body: &[],
            errors: &[(404, "no such tag")],
            handler: || delete(api::delete_tag),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/merge",
            role: writer,
            summary: "Merge a ref into a branch in one commit; appends to one table on both \
                  sides combine, other double changes are a 409 and nothing is written",
            query: &[],
            body: &[
                ("source", "string", "the branch, tag or commit to merge"),
                ("into", "string", "the branch to merge into (default: main)"),
                ("dry_run", "boolean", "only say what would change"),
            ],
            errors: &[(409, "a conflict"), (404, "no such ref")],
            handler: || post(api::merge),
        },
    ]
}

/// A ref's history: its log, every ref's commit graph, and what two refs differ by.
fn history() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/log",
            role: reader,
            summary: "Commits of a ref, newest first",
            query: &[REF, ("limit", "how many (default 50)")],
            body: &[],
            errors: &[(404, "no such ref")],
            handler: || get(api::log),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/graph",
            role: reader,
            summary: "The commit graph of every branch and tag, as `basin log --graph`: the \
                  newest commits they reach, each before its parents (parent and merge_parent \
                  link them), with the refs at each. Pipeline runs' branches (run/ID) are \
                  left out unless runs=true; their commits still show where a merge brought \
                  them in",
            query: &[
                ("limit", "how many commits (default 200, at most 1000)"),
                ("runs", "true: run/ID branches too"),
            ],
            body: &[],
            errors: &[],
            handler: || get(api::graph),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/diff",
            role: reader,
            summary: "What changed between two refs, as `basin diff`: per table added, changed \
                  or dropped, with the rows and data files each side added or removed and \
                  its snapshot on each side (a commit's changes: from=@PARENT to=@COMMIT)",
            query: &[
                ("from", "branch, tag or REF@COMMIT to compare from"),
                ("to", "branch, tag or REF@COMMIT to compare to"),
            ],
            body: &[],
            errors: &[(404, "no such ref or commit")],
            handler: || get(api::diff),
        },
    ]
}
