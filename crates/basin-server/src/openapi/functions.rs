//! Triggered functions: calls, deployed functions, their events, S3 notifications.

use axum::http::Method;
use axum::routing::{get, post};
use basin_service::Role;

use super::endpoint::Endpoint;
use crate::triggers;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let mut all = functions();
    all.extend(events());
    all
}

/// Calling, listing and deploying functions.
fn functions() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    vec![
        Endpoint {
            method: Method::POST,
            path: "/fn/{name}",
            role: writer,
            summary: "Call the deployed @basin.http function NAME (or POST to the path it \
                  declared) with the JSON body as its event. Waits for the handler and \
                  answers its JSON result (or {event, commit} for a function with to=); \
                  with async=1 answers 202 {event, state} at once. The header \
                  Idempotency-Key makes repeated calls one event",
            query: &[(
                "async",
                "`1`: answer 202 with the event's id instead of waiting",
            )],
            body: &[],
            errors: &[
                (
                    202,
                    "queued (async=1): look it up at /api/v1/events/{event}",
                ),
                (400, "the body is not JSON"),
                (404, "no such function"),
                (500, "the function raised: error, hint, event and logs"),
                (
                    504,
                    "the function did not finish in its time limit; it may still",
                ),
            ],
            handler: || post(triggers::call_by_name),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/functions",
            role: reader,
            summary: "Deployed functions, as `basin functions ls`: name, file, source, \
                  declaration, version, deployed_at_ms, trigger (in words) and events (how \
                  many are pending, running, succeeded, failed and dead)",
            query: &[],
            body: &[],
            errors: &[],
            handler: || get(triggers::functions),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/deploy",
            role: writer,
            summary: "Deploy a folder's triggered functions, as `basin deploy` (`basin --remote \
                  URL deploy DIR` sends it): answers the plan, applied unless `plan` is true. \
                  The token deploys as itself: its functions write with its grants, and a \
                  token that is not an admin changes and removes only its own functions, \
                  writes only where it may, and deploys none that reads secrets",
            query: &[],
            body: &[
                (
                    "files",
                    "object",
                    "the folder's .py files and basin.toml: file name -> text",
                ),
                (
                    "plan",
                    "boolean",
                    "only say what would change (default false)",
                ),
            ],
            errors: &[
                (
                    400,
                    "a file a deploy does not read, or a declaration in error",
                ),
                (
                    403,
                    "another's function, a table the token may not write, secrets",
                ),
            ],
            handler: || post(triggers::deploy),
        },
    ]
}

/// The events functions were asked to handle, and S3 notifications that make them.
fn events() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    vec![
        Endpoint {
            method: Method::GET,
            path: "/api/v1/events",
            role: reader,
            summary: "Events, newest first, as `basin events ls`: function, state, attempts, \
                  payload, error, logs, result or commit",
            query: &[
                ("state", "pending, running, succeeded, failed or dead"),
                ("function", "only this function's"),
                ("limit", "how many (default 50)"),
            ],
            body: &[],
            errors: &[(400, "an unknown state")],
            handler: || get(triggers::events),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/events/{id}/retry",
            role: writer,
            summary: "Queue a failed or dead event again (by id or a unique prefix), as \
                  `basin events retry`; answers the event, now pending",
            query: &[],
            body: &[],
            errors: &[
                (404, "no such event"),
                (400, "the event is not failed or dead"),
            ],
            handler: || post(triggers::retry_event),
        },
        Endpoint {
            method: Method::GET,
            path: "/api/v1/events/{id}",
            role: reader,
            summary: "One event (by id or a unique prefix): state, attempts, error, logs, \
                  result or commit",
            query: &[],
            body: &[],
            errors: &[(404, "no such event")],
            handler: || get(triggers::event),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/webhooks/s3",
            role: writer,
            summary: "An S3 or MinIO event notification ({Records: [...]}): queues an event for \
                  each created object in a bucket configured in basin.toml ([buckets.NAME] \
                  url) that a deployed function watches. Answers {events, queued}; an \
                  object already queued (by the poller, or an earlier notification) is not \
                  queued again",
            query: &[],
            body: &[("Records", "array", "the notification's records")],
            errors: &[(400, "not an event notification")],
            handler: || post(triggers::s3_webhook),
        },
    ]
}
