//! Usage: what functions and queries used, priced. Functions as AWS Lambda bills them
//! (GB-seconds and requests), queries as Athena does (bytes scanned).

use std::collections::BTreeMap;

use basin_core::{InvocationKind, InvocationRecord, InvocationStatus, Result};
use serde::{Deserialize, Serialize};

use crate::Lakehouse;
use crate::config::Pricing;

/// A finished query, as a front door saw it.
#[derive(Clone, Debug)]
pub struct QueryUsage {
    /// The front door: `cli`, `http` or `postgres`.
    pub via: &'static str,
    pub started_at_ms: i64,
    pub seconds: f64,
    pub rows: u64,
    pub bytes_scanned: u64,
    pub error: Option<String>,
    /// Its client left before the answer ended (then `error` is `None`).
    pub abandoned: bool,
}

/// What functions and queries used, priced; queries metered as they run (`basin usage`).
///
/// A handle borrowing the lakehouse: [`Lakehouse::usage`].
#[derive(Clone, Copy)]
pub struct Usage<'a> {
    lake: &'a Lakehouse,
}

impl Lakehouse {
    /// What functions and queries used, priced: see [`Usage`].
    pub fn usage(&self) -> Usage<'_> {
        Usage { lake: self }
    }
}

impl Usage<'_> {
    /// Invocations and queries since `since_ms`, grouped and priced (`basin usage`,
    /// `GET /api/v1/usage`).
    pub async fn report(&self, since_ms: i64, by: UsageBy) -> Result<UsageReport> {
        let records = self.lake.catalog().store().invocations(since_ms).await?;
        let pricing = self.lake.settings().pricing;
        let rows = match by {
            UsageBy::Function => summarize_usage(&records, &pricing, |r| r.function.clone()),
            UsageBy::Day => summarize_usage(&records, &pricing, |r| {
                chrono::DateTime::from_timestamp_millis(r.started_at_ms)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            }),
        };
        Ok(UsageReport { pricing, rows })
    }

    /// Records a query for `basin usage`, as `sql (VIA)`.
    pub async fn record_query(&self, query: QueryUsage) -> Result<()> {
        let record = InvocationRecord {
            id: basin_core::ids::ordered(),
            function: format!("sql ({})", query.via),
            env_hash: String::new(),
            started_at_ms: query.started_at_ms,
            duration_ms: query.seconds * 1000.0,
            cpu_ms: 0.0,
            peak_memory_bytes: 0,
            memory_limit_bytes: 0,
            rows_in: 0,
            bytes_in: 0,
            rows_out: query.rows,
            bytes_out: 0,
            status: match (&query.error, query.abandoned) {
                (Some(_), _) => InvocationStatus::Error,
                (None, true) => InvocationStatus::Abandoned,
                (None, false) => InvocationStatus::Ok,
            },
            error: query
                .error
                .or_else(|| query.abandoned.then(|| ABANDONED.to_string())),
            kind: InvocationKind::Query,
            bytes_scanned: query.bytes_scanned,
        };
        self.lake.catalog().store().record_invocation(&record).await
    }

    /// Runs a SQL script like [`Lakehouse::query`] and meters it as coming through `via`.
    /// With `in_background`, the record is written after this returns (a server answers
    /// first); otherwise before (a CLI process may exit right after).
    pub async fn query_via(
        &self,
        via: &'static str,
        sql: &str,
        at: Option<&str>,
        namespace: Option<&str>,
        in_background: bool,
    ) -> Result<basin_sql::QueryResult> {
        let started_at_ms = chrono::Utc::now().timestamp_millis();
        let clock = std::time::Instant::now();
        // A command's query keeps what it decodes on disk for the next command's.
        let result = self
            .lake
            .query_keeping(sql, at, namespace, via == "cli")
            .await;
        let usage = QueryUsage {
            via,
            started_at_ms,
            seconds: clock.elapsed().as_secs_f64(),
            rows: result.as_ref().map_or(0, |r| r.num_rows() as u64),
            bytes_scanned: result.as_ref().map_or(0, |r| r.bytes_scanned),
            error: result.as_ref().err().map(|e| e.message.clone()),
            abandoned: false,
        };
        let lakehouse = self.lake.clone();
        let record = async move {
            if let Err(e) = lakehouse.usage().record_query(usage).await {
                tracing::warn!("the query ran but could not be metered: {e}");
            }
        };
        if in_background {
            tokio::spawn(record);
        } else {
            record.await;
        }
        result
    }
}

/// How `basin usage` groups invocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageBy {
    #[default]
    Function,
    /// The UTC day an invocation started.
    Day,
}

impl UsageBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageBy::Function => "function",
            UsageBy::Day => "day",
        }
    }
}

/// Usage grouped and priced, with the prices applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UsageReport {
    pub pricing: Pricing,
    pub rows: Vec<UsageRow>,
}

/// Totals of a group of invocations and queries, as `basin usage` shows them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UsageRow {
    pub key: String,
    pub invocations: u64,
    pub errors: u64,
    /// Queries whose client left before their answer ended (not errors).
    pub abandoned: u64,
    pub duration_seconds: f64,
    pub cpu_seconds: f64,
    pub gb_seconds: f64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_scanned: u64,
    pub cost_usd: f64,
}

/// What a query's record says when its client left before its answer ended.
const ABANDONED: &str = "the client left before the answer ended";

/// What one record costs. A function: its GB-seconds and one request. A query: the bytes it
/// scanned, rounded up to a whole megabyte with a 10 MB minimum, as Athena bills; failed
/// queries are free, and, as Athena bills cancelled ones, a query whose client left pays for
/// what it scanned until then.
pub fn cost(record: &InvocationRecord, pricing: &Pricing) -> f64 {
    let billed = [InvocationStatus::Ok, InvocationStatus::Abandoned];
    match record.kind {
        InvocationKind::Function => {
            record.gb_seconds() * pricing.gb_second + pricing.per_million_requests / 1e6
        }
        InvocationKind::Query if !billed.contains(&record.status) => 0.0,
        InvocationKind::Query => {
            const MB: u64 = 1 << 20;
            let billed = record.bytes_scanned.div_ceil(MB).max(10) * MB;
            billed as f64 / (1u64 << 40) as f64 * pricing.per_tb_scanned
        }
    }
}

/// Groups records by `key` and prices them.
pub fn summarize_usage(
    records: &[InvocationRecord],
    pricing: &Pricing,
    key: impl Fn(&InvocationRecord) -> String,
) -> Vec<UsageRow> {
    let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
    for r in records {
        let k = key(r);
        let row = rows.entry(k.clone()).or_insert_with(|| UsageRow {
            key: k,
            ..UsageRow::default()
        });
        row.invocations += 1;
        row.errors += u64::from(!matches!(
            r.status,
            InvocationStatus::Ok | InvocationStatus::Abandoned
        ));
        row.abandoned += u64::from(r.status == InvocationStatus::Abandoned);
        row.duration_seconds += r.duration_ms / 1000.0;
        row.cpu_seconds += r.cpu_ms / 1000.0;
        row.gb_seconds += r.gb_seconds();
        row.rows_in += r.rows_in;
        row.rows_out += r.rows_out;
        row.bytes_scanned += r.bytes_scanned;
        row.cost_usd += cost(r, pricing);
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(bytes_scanned: u64, status: InvocationStatus) -> InvocationRecord {
        InvocationRecord {
            id: "q".into(),
            function: "sql (http)".into(),
            env_hash: String::new(),
            started_at_ms: 0,
            duration_ms: 5.0,
            cpu_ms: 0.0,
            peak_memory_bytes: 0,
            memory_limit_bytes: 0,
            rows_in: 0,
            bytes_in: 0,
            rows_out: 1,
            bytes_out: 0,
            status,
            error: None,
            kind: InvocationKind::Query,
            bytes_scanned,
        }
    }

    #[test]
    fn queries_cost_what_athena_charges_for_their_scan() {
        let pricing = Pricing::default();
        let tb = (1u64 << 40) as f64;
        // A small scan is billed as 10 MB.
        let small = cost(&query(1_000, InvocationStatus::Ok), &pricing);
        assert!((small - 10.0 * (1 << 20) as f64 / tb * 5.0).abs() < 1e-15);
        // A large one by the megabyte, rounded up.
        let large = cost(&query((1 << 30) + 1, InvocationStatus::Ok), &pricing);
        assert!((large - 1025.0 * (1 << 20) as f64 / tb * 5.0).abs() < 1e-15);
        assert_eq!(
            cost(&query(1 << 30, InvocationStatus::Error), &pricing),
            0.0
        );
        // One whose client left pays for what it scanned, as Athena bills a cancelled query.
        assert_eq!(
            cost(&query((1 << 30) + 1, InvocationStatus::Abandoned), &pricing),
            large
        );
        let rows = summarize_usage(
            &[
                query(1, InvocationStatus::Ok),
                query(1, InvocationStatus::Abandoned),
                query(1, InvocationStatus::Timeout),
            ],
            &pricing,
            |r| r.function.clone(),
        );
        let row = &rows[0];
        assert_eq!((row.invocations, row.errors, row.abandoned), (3, 1, 1));
    }
}
