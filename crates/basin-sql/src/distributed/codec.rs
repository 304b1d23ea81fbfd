//! How a Basin table travels in a Ballista logical plan: by its key and its immutable
//! metadata location, loaded again on the scheduler (which then plans its files). Physical
//! plans need nothing of Basin's: a scan is a plain Parquet `DataSourceExec` there.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use basin_catalog::Key;
use basin_table::Tables;
use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::sql::TableReference;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::pruned::PrunedScan;

/// What a plan carries of a table.
#[derive(Debug, Serialize, Deserialize)]
struct Encoded {
    key: String,
    metadata_location: String,
    string_views: bool,
}

/// Ballista's own codec, plus Basin's tables. On a client it only encodes; on the
/// scheduler it loads what it decodes, from the warehouse only.
#[derive(Debug)]
pub(crate) struct BasinCodec {
    inner: BallistaLogicalExtensionCodec,
    /// The scheduler's view of the lakehouse; `None` on a client.
    tables: Option<(Engine, Tables)>,
}

impl BasinCodec {
    pub(crate) fn client() -> Self {
        Self {
            inner: BallistaLogicalExtensionCodec::default(),
            tables: None,
        }
    }

    pub(crate) fn scheduler(engine: Engine, tables: Tables) -> Self {
        Self {
            inner: BallistaLogicalExtensionCodec::default(),
            tables: Some((engine, tables)),
        }
    }
}

impl LogicalExtensionCodec for BasinCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some((engine, tables)) = &self.tables else {
            return Err(DataFusionError::Internal(
                "a Basin client cannot decode tables".into(),
            ));
        };
        let encoded: Encoded = serde_json::from_slice(buf).map_err(|e| {
            DataFusionError::Plan(format!("`{table_ref}` is not a Basin table: {e}"))
        })?;
        // A plan names its files; only the warehouse's may be read.
        if !engine.reads(&encoded.metadata_location) {
            return Err(DataFusionError::Plan(format!(
                "`{table_ref}` is outside the warehouse ({})",
                encoded.metadata_location
            )));
        }
        let key = Key::parse(&encoded.key).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(PrunedScan::decoded(
            tables,
            key,
            encoded.metadata_location,
            schema,
            encoded.string_views,
        )))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        match node.as_any().downcast_ref::<PrunedScan>() {
            Some(scan) => {
                let encoded = Encoded {
                    key: scan.key().to_string(),
                    metadata_location: scan.location().to_string(),
                    string_views: scan.string_views(),
                };
                serde_json::to_writer(buf, &encoded)
                    .map_err(|e| DataFusionError::Internal(format!("`{table_ref}`: {e}")))
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}
