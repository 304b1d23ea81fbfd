//! Connecting to the Postgres catalog: one pool per node, READ COMMITTED on every connection.

use std::fmt;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

use basin_core::{Error, ErrorKind, Result};

/// Connections per node: commits, claims and reads in flight at once, plus one per
/// [`PgStore::listen`].
const MAX_CONNECTIONS: u32 = 10;

/// The catalog in a Postgres database, shared by every node given the same URL.
#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// The URL without its password, for messages.
    pub(super) shown: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

impl PgStore {
    /// Connects to the catalog database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DB`;
    /// what the URL leaves out comes from the `PG*` environment variables, as with `psql`).
    /// Call [`Store::initialize`] before use.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let shown = redact(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(format!("`{shown}` is not a Postgres URL"))
                .with_hint("write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE")
                .with_source(e)
        })?;
        // One connection first, to report what is wrong at once: the pool would retry a
        // refused connection until its timeout, then report only the timeout.
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| cannot_connect(&shown, e))?;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // What the locking in this module is reasoned for (see above). Higher
                    // levels would turn a claim's re-check of a row another node changed
                    // into a serialization error.
                    conn.execute(
                        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(PgStore { pool, shown })
    }

    /// Starts a transaction whose commit does not wait for the disk (`synchronous_commit =
    /// off`), for records written after the fact: a synchronous call that already answered,
    /// an audit entry. A crash of the server may lose the last ones; none is half written.
    pub(super) async fn begin_relaxed(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// `url` without its password (in the authority or as `?password=`), for messages.
fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "the catalog URL".to_string();
    };
    let _ = parsed.set_password(None);
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "password")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

fn cannot_connect(shown: &str, e: sqlx::Error) -> Error {
    let code = e
        .as_database_error()
        .and_then(|db| db.code())
        .map(|c| c.into_owned());
    let hint = match code.as_deref() {
        Some("28P01" | "28000") => "check the user and password (in the URL, or PGPASSWORD)",
        Some("3D000") => "create the database first (`createdb NAME`), or name another one",
        _ if matches!(e, sqlx::Error::Tls(_)) => {
            "check `sslmode` in the URL against the server's TLS settings"
        }
        _ => "check that Postgres runs at that host and port and accepts connections from here",
    };
    Error::new(
        ErrorKind::Store,
        format!("cannot connect to the catalog at {shown}"),
    )
    .with_hint(hint)
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_url_in_a_message_has_no_password() {
        assert_eq!(
            redact("postgres://basin:s3cret@db.internal:5433/lake?sslmode=require"),
            "postgres://basin@db.internal:5433/lake?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://db/lake?user=basin&password=s3cret&application_name=x"),
            "postgresql://db/lake?user=basin&application_name=x"
        );
        assert!(!redact("postgres://basin:s3cret@[::1").contains("s3cret"));
    }
}
