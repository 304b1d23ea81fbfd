//! SQL over HTTP.

use axum::http::Method;
use axum::routing::post;
use basin_service::Role;

use super::endpoint::Endpoint;

pub(super) fn endpoints() -> Vec<Endpoint> {
    let reader = Some(Role::Reader);
    vec![Endpoint {
        method: Method::POST,
        path: "/api/v1/query",
        role: reader,
        summary: "Run read-only SQL on a ref (queries, EXPLAIN, SHOW, views for the script; \
                  anything else is refused by name). Rows stream as JSON (columns, rows, \
                  row_count, truncated and a notice past [server] json_max_rows or \
                  json_max_bytes, seconds, and error if the query failed after its first \
                  rows), or as an Arrow IPC stream with Accept: \
                  application/vnd.apache.arrow.stream. JSON numbers are exact: decimals are \
                  strings with their scale (\"10.50\"), 64-bit integers are numbers up to \
                  2^53-1 in magnitude and strings beyond; each column's type is in columns. \
                  With format csv or parquet every row comes as a file \
                  (Content-Disposition: attachment). An answer asked for before on the same \
                  commit may come from the result cache ([sql] result_cache), marked \
                  Basin-Result-Cache: hit (miss when the query ran); Cache-Control: no-cache \
                  runs the query and keeps nothing",
        query: &[],
        body: &[
            (
                "sql",
                "string",
                "the statements; the last query's rows are returned",
            ),
            ("ref", "string", "branch, tag or REF@COMMIT (default: main)"),
            (
                "namespace",
                "string",
                "where unqualified table names resolve",
            ),
            (
                "format",
                "string",
                "`json` (default), or every row as a file to download: `csv` (a header \
                 line, decimals with their scale), `parquet` or `arrow` (an IPC stream)",
            ),
        ],
        errors: &[
            (
                400,
                "invalid SQL, or a statement the policy refuses (named)",
            ),
            (404, "unknown table, column or ref (with a hint)"),
            (
                422,
                "the query needs more memory than [sql] query_memory_limit",
            ),
            (504, "the query ran longer than [sql] query_timeout"),
        ],
        handler: || post(crate::query::query),
    }]
}
