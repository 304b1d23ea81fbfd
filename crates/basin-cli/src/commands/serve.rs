use std::net::SocketAddr;
use std::path::Path;

use crate::lake::open_local;
use crate::output::status;

#[derive(clap::Args)]
#[command(
    after_help = "Endpoints (all of them, with parameters: docs/openapi.json):
  GET  /healthz            200 when serving
  GET  /metrics            Prometheus metrics (requests, queries, rows, time)
  GET  /api/v1/refs        branches and tags
  POST /api/v1/branches    {\"name\": \"dev\", \"from\": \"main\"} (writers)
  GET  /api/v1/log         ?ref=main&limit=50: commits, newest first
  GET  /api/v1/tables      ?ref=main: tables of a ref; /api/v1/tables/NAME one table
  POST /api/v1/tables/NAME/import?filename=orders.csv&branch=dev   the body is the file
  POST /api/v1/merge       {\"source\": \"dev\", \"into\": \"main\"} (writers)
  GET|POST /api/v1/namespaces, DELETE /api/v1/namespaces/NAME     (writes: writers)
  GET|POST /api/v1/tokens, DELETE /api/v1/tokens/ID                (admins)
  GET  /api/v1/runs        pipeline runs; /api/v1/runs/ID one run
  GET  /api/v1/usage       ?by=function|day&since_ms=...: invocations, GB-seconds, cost
  POST /api/v1/query       {\"sql\": \"...\", \"ref\": \"dev\", \"namespace\": \"tpch\"}: JSON rows, or an
                           Arrow IPC stream with Accept: application/vnd.apache.arrow.stream

  /                        the web console
  /v1/...                  the Iceberg REST catalog; the warehouse is the branch
                           (RestCatalog(uri=\"http://127.0.0.1:8181\", warehouse=\"dev\"))
  /mcp                     Model Context Protocol for AI agents (streamable HTTP; see basin mcp --help)

With --pg-listen, Postgres clients run read-only SQL: the database name is the ref
(psql -h 127.0.0.1 -p 5433 -d dev), or SET basin.ref = 'dev'; the password is a token.

Requests need Authorization: Bearer TOKEN (basin token create --role reader|writer|admin):
401 without a known token, 403 when its role does not allow the request. --no-auth serves
without tokens, on loopback addresses only. Every response carries an x-request-id, and every
log line of the request on stderr too. SIGINT or SIGTERM finishes requests in flight, then
stops.

Examples:
  basin serve --no-auth                     # this machine only, no tokens
  basin serve --listen 0.0.0.0:8181         # anyone with a token
  basin serve --pg-listen 127.0.0.1:5433    # and psql -h 127.0.0.1 -p 5433 -U me -d main
  curl -s localhost:8181/api/v1/query -d '{\"sql\": \"SELECT 1 AS one\"}' -H 'content-type: application/json'"
)]
pub struct Args {
    /// The address to serve HTTP on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:8181", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Also serve read-only SQL over the Postgres wire protocol here (psql, psycopg, BI tools)
    #[arg(long, value_name = "ADDR:PORT")]
    pg_listen: Option<SocketAddr>,
    /// Serve without access tokens (loopback addresses only)
    #[arg(long)]
    no_auth: bool,
    /// Queue triggered events but run none here: `basin worker` nodes of the same shared
    /// catalog run them
    #[arg(long)]
    queue_only: bool,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    super::start_logging(&lakehouse)?;
    // Held while serving: `basin put` and others can tell a server runs (released on exit).
    let served = std::fs::File::create(lakehouse.serve_lock())?;
    if served.try_lock().is_err() {
        status("note: another `basin serve` of this lakehouse runs on this machine");
    }
    let options = basin_server::ServeOptions {
        listen: args.listen,
        no_auth: args.no_auth,
        pg_listen: args.pg_listen,
        queue_only: args.queue_only,
    };
    basin_server::serve(lakehouse, options, |bound| {
        let postgres = bound
            .postgres
            .map(|addr| format!(" and postgresql://{addr}/main"))
            .unwrap_or_default();
        let sql = bound
            .sql_scheduler
            .map(|addr| format!("; SQL scheduler on {addr}"))
            .unwrap_or_default();
        let scheme = if bound.tls { "https" } else { "http" };
        status(format!(
            "Serving the lakehouse on {scheme}://{}{postgres}{sql} (Ctrl-C to stop)",
            bound.http
        ))
    })
    .await?;
    Ok(())
}
