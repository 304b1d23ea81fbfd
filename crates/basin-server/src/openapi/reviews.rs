//! Reviews: proposed merges into protected branches, their approvals and checks.

use axum::http::Method;
use axum::routing::{get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::api::reviews;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/reviews",
            role: reader,
            summary: "Reviews, newest first",
            query: &[("state", "open, merged or closed (default: all)")],
            body: &[],
            errors: &[(400, "an unknown state")],
            handler: || get(reviews::list),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/reviews",
            role: writer,
            summary: "Propose merging a branch into another (201); the token's name is its author",
            query: &[],
            body: &[
                ("source", "string", "the branch whose changes to merge"),
                ("into", "string", "the branch to merge into (default: main)"),
                ("title", "string", "what the change is"),
            ],
            errors: &[
                (404, "no such branch"),
                (409, "an open review of the same merge"),
            ],
            handler: || post(reviews::open),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/reviews/{id}",
            role: reader,
            summary: "A review: its changes since the source left the target, its approvals \
                  that count, and the target's required checks run on the would-be result",
            query: &[],
            body: &[],
            errors: &[(404, "no such review")],
            handler: || get(reviews::show),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/reviews/{id}/approve",
            role: writer,
            summary: "Approve a review for the source's current head (not one's own)",
            query: &[],
            body: &[],
            errors: &[
                (403, "the review's author"),
                (400, "the review is not open"),
            ],
            handler: || post(reviews::approve),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/reviews/{id}/merge",
            role: writer,
            summary: "Merge a review in one commit, if it has the approvals the target needs \
                  and the target's required checks pass on the result",
            query: &[],
            body: &[],
            errors: &[
                (
                    403,
                    "missing approvals or a failed check (named, with its first rows)",
                ),
                (409, "a conflict"),
            ],
            handler: || post(reviews::merge),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/reviews/{id}/close",
            role: writer,
            summary: "Close a review without merging it",
            query: &[],
            body: &[],
            errors: &[(400, "the review is not open")],
            handler: || post(reviews::close),
        },
    ]
}
