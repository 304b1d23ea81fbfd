//! What BI tools read about the lakehouse, in Postgres' words.
//!
//! datafusion-pg-catalog answers `pg_catalog`; three of its answers are not what a Postgres
//! client expects of Basin, so they are replaced here:
//! - `pg_database` (`\l`, DBeaver's database list) lists the catalog's branches and tags, the
//!   names a client can connect to, instead of DataFusion's catalogs (pipelines' `run/*` and
//!   `replay/*` branches left out, as `basin branch ls` does);
//! - `pg_attribute` carries each decimal column's precision and scale as Postgres' type
//!   modifier, so `format_type` (`\d`, JDBC's `getColumns`) says `numeric(18,2)`;
//! - `information_schema.columns` names types as Postgres does (`bigint`, `numeric`, `text`,
//!   with `udt_name`), where DataFusion's says `Int64`, `Decimal128(18, 2)`, `Utf8View`.
//!
//! - `pg_constraint` and `pg_index` hold their key columns as arrays (`int2[]`), as drivers
//!   index and search them (`conkey[n]`, `= ANY(conkey)`), where the library has text;
//! - `information_schema.table_constraints` and `key_column_usage` exist (empty: Basin's tables
//!   have no keys), as Metabase's sync joins them.
//!
//! The rest of `information_schema` is DataFusion's.

use std::any::Any;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use basin_service::Lakehouse;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;

/// Replaces the three answers (see the module docs) in a session that has `pg_catalog` set up.
pub(super) fn install(context: &SessionContext, lakehouse: Lakehouse) -> Result<()> {
    let catalog = context
        .catalog(basin_sql::CATALOG)
        .ok_or_else(|| DataFusionError::Plan("no Basin catalog in the session".into()))?;
    let pg_catalog = catalog
        .schema("pg_catalog")
        .ok_or_else(|| DataFusionError::Plan("pg_catalog is not set up".into()))?;
    let list = context.state().catalog_list().clone();
    catalog.register_schema(
        "pg_catalog",
        Arc::new(PgCatalog {
            inner: pg_catalog,
            lakehouse,
            list: list.clone(),
        }),
    )?;
    // DataFusion answers `information_schema` itself while its own is turned on; turned off,
    // the session looks the schema up in the catalog like any other.
    context
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .catalog
        .information_schema = false;
    catalog.register_schema(
        "information_schema",
        Arc::new(InformationSchema {
            inner: InformationSchemaProvider::new(list),
        }),
    )?;
    Ok(())
}

#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    lakehouse: Lakehouse,
    list: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "pg_database" => Arc::new(Rewritten {
                inner: table,
                rewrite: Rewrite::Refs(Box::new(self.lakehouse.clone())),
            }),
            "pg_attribute" => Arc::new(Rewritten {
                inner: table,
                rewrite: Rewrite::TypeModifiers(self.list.clone()),
            }),
            "pg_constraint" => Arc::new(Rewritten {
                inner: table,
                rewrite: Rewrite::Arrays(&[
                    ("conkey", DataType::Int16),
                    ("confkey", DataType::Int16),
                    ("confdelsetcols", DataType::Int16),
                    ("conpfeqop", DataType::Int32),
                    ("conppeqop", DataType::Int32),
                    ("conffeqop", DataType::Int32),
                    ("conexclop", DataType::Int32),
                ]),
            }),
            "pg_index" => Arc::new(Rewritten {
                inner: table,
                rewrite: Rewrite::Arrays(&[
                    ("indkey", DataType::Int16),
                    ("indoption", DataType::Int16),
                    ("indcollation", DataType::Int32),
                    ("indclass", DataType::Int32),
                ]),
            }),
            _ => table,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct InformationSchema {
    inner: InformationSchemaProvider,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(KEY_TABLES.iter().map(|(table, _)| table.to_string()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(columns) = KEY_TABLES
            .iter()
            .find(|(table, _)| name.eq_ignore_ascii_case(table))
            .map(|(_, columns)| columns)
        {
            let schema = Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(*c, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            );
            return Ok(Some(Arc::new(datafusion::datasource::MemTable::try_new(
                Arc::new(schema),
                vec![vec![]],
            )?)));
        }
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        Ok(Some(if name.eq_ignore_ascii_case("columns") {
            Arc::new(Rewritten {
                inner: table,
                rewrite: Rewrite::ColumnTypes,
            })
        } else {
            table
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            || KEY_TABLES
                .iter()
                .any(|(table, _)| name.eq_ignore_ascii_case(table))
    }
}

/// `information_schema`'s tables of keys, with Postgres' columns; always empty (Basin's tables
/// declare no primary, unique or foreign keys).
const KEY_TABLES: [(&str, &[&str]); 2] = [
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position",
            "position_in_unique_constraint",
        ],
    ),
];

/// How a table's rows are rewritten.
#[derive(Debug)]
enum Rewrite {
    /// `pg_database`: one row per branch and tag.
    Refs(Box<Lakehouse>),
    /// `pg_attribute`: `atttypmod` of decimal columns.
    TypeModifiers(Arc<dyn CatalogProviderList>),
    /// `information_schema.columns`: Postgres type names, and `udt_name`.
    ColumnTypes,
    /// Text columns holding lists of numbers (`{1,2}`, `[1, 2]`, `1 2`) as arrays of these.
    Arrays(&'static [(&'static str, DataType)]),
}

/// A catalog table whose rows are the inner table's, rewritten (the tables are small: one row
/// per ref, column or table).
#[derive(Debug)]
struct Rewritten {
    inner: Arc<dyn TableProvider>,
    rewrite: Rewrite,
}

#[async_trait]
impl TableProvider for Rewritten {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        let inner = self.inner.schema();
        match self.rewrite {
            Rewrite::ColumnTypes => {
                let mut fields: Vec<Field> = inner
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::UInt64 => f.as_ref().clone().with_data_type(DataType::Int32),
                        _ => f.as_ref().clone(),
                    })
                    .collect();
                fields.extend(
                    POSTGRES_COLUMNS
                        .iter()
                        .map(|(name, _)| Field::new(*name, DataType::Utf8, true)),
                );
                Arc::new(Schema::new(fields))
            }
            Rewrite::Arrays(arrays) => Arc::new(Schema::new(
                inner
                    .fields()
                    .iter()
                    .map(|f| match arrays.iter().find(|(name, _)| name == f.name()) {
                        Some((name, item)) => {
                            Field::new(*name, DataType::new_list(item.clone(), true), true)
                        }
                        None => f.as_ref().clone(),
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => inner,
        }
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let schema = self.schema();
        let mut rewritten = Vec::with_capacity(batches.len());
        for batch in batches {
            rewritten.push(match &self.rewrite {
                Rewrite::Refs(lakehouse) => refs(lakehouse, &batch).await?,
                Rewrite::TypeModifiers(list) => type_modifiers(list, &batch).await?,
                Rewrite::ColumnTypes => column_types(&schema, &batch)?,
                Rewrite::Arrays(_) => arrays(&schema, &batch)?,
            });
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[rewritten],
            schema,
            projection.cloned(),
        )?)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("the catalog table has no `{name}`")))
}

/// `pg_database` with a row per branch and tag: the first row of the library's answer
/// (encoding, collation and the like) repeated with the ref's name.
async fn refs(lakehouse: &Lakehouse, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut names: Vec<String> = lakehouse
        .catalog()
        .list_refs()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .into_iter()
        // As `basin branch ls` lists them: pipelines' own branches stay out of the way.
        .filter(|r| !basin_service::pipeline::is_pipeline_branch(&r.name))
        .map(|r| r.name)
        .collect();
    names.sort();
    if batch.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(batch.schema()));
    }
    // Every row copies the library's first row, its name and id replaced.
    let indices = Int32Array::from(vec![0; names.len()]);
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, values) in batch.schema().fields().iter().zip(batch.columns()) {
        columns.push(match field.name().as_str() {
            "datname" => Arc::new(StringArray::from(names.clone())) as ArrayRef,
            // Fixed, distinct object ids from Postgres' user range.
            "oid" => Arc::new(Int32Array::from_iter_values(
                (0..names.len() as i32).map(|i| 70_000 + i),
            )),
            "datistemplate" => Arc::new(BooleanArray::from(vec![false; names.len()])),
            _ => arrow::compute::take(values.as_ref(), &indices, None)?,
        });
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `pg_attribute` with `atttypmod` set for decimal columns, as Postgres stores
/// `numeric(p,s)`: `(p << 16 | s) + 4`. The library lists every catalog's schemas, tables and
/// columns in order; the same walk here lines up row for row, and a row whose column name
/// does not line up keeps the library's -1.
async fn type_modifiers(
    list: &Arc<dyn CatalogProviderList>,
    batch: &RecordBatch,
) -> Result<RecordBatch> {
    let mut walked: Vec<(String, i32)> = Vec::new();
    for catalog_name in list.catalog_names() {
        let Some(catalog) = list.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table_name in schema.table_names() {
                let Some(table) = schema.table(&table_name).await? else {
                    continue;
                };
                for field in table.schema().fields() {
                    let modifier = match field.data_type() {
                        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => {
                            ((i32::from(*p) << 16) | i32::from(*s)) + 4
                        }
                        _ => -1,
                    };
                    walked.push((field.name().clone(), modifier));
                }
            }
        }
    }
    let names = column(batch, "attname")?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Plan("pg_attribute.attname is not text".into()))?;
    let modifiers = column(batch, "atttypmod")?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| DataFusionError::Plan("pg_attribute.atttypmod is not int4".into()))?;
    let patched: Int32Array = (0..batch.num_rows())
        .map(|i| match walked.get(i) {
            Some((name, modifier)) if names.value(i) == name => Some(*modifier),
            _ => Some(modifiers.value(i)),
        })
        .collect();
    replace(batch, "atttypmod", Arc::new(patched))
}

fn replace(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    let index = batch.schema().index_of(name)?;
    let mut columns = batch.columns().to_vec();
    columns[index] = values;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The batch with each column the schema makes a list parsed from its text: the numbers in
/// it, whatever the brackets and separators.
fn arrays(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{Int64Builder, ListBuilder};
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, values) in schema.fields().iter().zip(batch.columns()) {
        let DataType::List(_) = field.data_type() else {
            columns.push(values.clone());
            continue;
        };
        let text = arrow::compute::cast(values, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        let numbers = |s: &str| -> Vec<i64> {
            s.split(|c: char| !(c.is_ascii_digit() || c == '-'))
                .filter_map(|n| n.parse().ok())
                .collect()
        };
        let mut list = ListBuilder::new(Int64Builder::new());
        for value in text.iter() {
            match value {
                Some(s) => list.append_value(numbers(s).into_iter().map(Some)),
                None => list.append_null(),
            }
        }
        // Then to the list's own item type (int2 or oid).
        let list = arrow::compute::cast(&list.finish(), field.data_type())?;
        columns.push(list);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The columns Postgres' `information_schema.columns` has and DataFusion's lacks, after
/// `udt_name`: each with its value for every Basin column (no identity or generated columns).
const POSTGRES_COLUMNS: [(&str, &str); 4] = [
    ("udt_name", ""),
    ("udt_schema", "pg_catalog"),
    ("is_identity", "NO"),
    ("is_generated", "NEVER"),
];

/// `information_schema.columns` with `data_type` as Postgres names it and `udt_name` added.
fn column_types(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let arrow_names = column(batch, "data_type")?;
    let arrow_names = arrow::compute::cast(arrow_names, &DataType::Utf8)?;
    let arrow_names = arrow_names
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8");
    let (mut sql, mut udt) = (Vec::new(), Vec::new());
    for name in arrow_names.iter() {
        let (s, u) = name.map_or((None, None), |n| {
            let (s, u) = postgres_type_names(n);
            (Some(s), Some(u))
        });
        sql.push(s);
        udt.push(u);
    }
    let index = batch.schema().index_of("data_type")?;
    let mut columns = batch.columns().to_vec();
    columns[index] = arrow::compute::cast(
        &(Arc::new(StringArray::from(sql)) as ArrayRef),
        batch.schema().field(index).data_type(),
    )?;
    // Postgres counts columns from 1 (DataFusion from 0).
    let position = batch.schema().index_of("ordinal_position")?;
    columns[position] = arrow::compute::kernels::numeric::add(
        &arrow::compute::cast(&columns[position], &DataType::Int64)?,
        &arrow::array::Int64Array::new_scalar(1),
    )?;
    columns.push(Arc::new(StringArray::from(udt)));
    for (_, value) in &POSTGRES_COLUMNS[1..] {
        columns.push(Arc::new(StringArray::from(vec![*value; batch.num_rows()])));
    }
    // Postgres' counts and sizes are `integer`s (DataFusion's are unsigned 64-bit).
    for (column, field) in columns.iter_mut().zip(schema.fields()) {
        *column = arrow::compute::cast(column, field.data_type())?;
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// (`data_type`, `udt_name`) for an Arrow type as DataFusion prints it: what Postgres'
/// `information_schema.columns` says for the type a Postgres client receives.
fn postgres_type_names(arrow: &str) -> (String, String) {
    let Ok(pg) = DataType::from_str(arrow)
        .map_err(|_| ())
        .and_then(|t| into_pg_type(&t).map_err(|_| ()))
    else {
        return (arrow.to_string(), arrow.to_string());
    };
    let udt = pg.name().to_string();
    let sql = match udt.as_str() {
        "bool" => "boolean",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "varchar" => "character varying",
        "bpchar" => "character",
        "time" => "time without time zone",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        array if array.starts_with('_') => "ARRAY",
        other => other,
    };
    (sql.to_string(), udt)
}

#[cfg(test)]
mod tests {
    use super::postgres_type_names;

    #[test]
    fn arrow_types_get_postgres_names() {
        let names = |arrow: &str| {
            let (sql, udt) = postgres_type_names(arrow);
            format!("{sql}/{udt}")
        };
        assert_eq!(names("Int64"), "bigint/int8");
        assert_eq!(names("Int32"), "integer/int4");
        assert_eq!(names("Decimal128(18, 2)"), "numeric/numeric");
        assert_eq!(names("Utf8View"), "text/text");
        assert_eq!(names("Date32"), "date/date");
        assert_eq!(names("Float64"), "double precision/float8");
        assert_eq!(names("Boolean"), "boolean/bool");
        assert_eq!(
            names(r#"Timestamp(µs, "UTC")"#),
            "timestamp with time zone/timestamptz"
        );
        assert_eq!(
            names("Timestamp(µs)"),
            "timestamp without time zone/timestamp"
        );
        assert_eq!(names("List(Int64)"), "ARRAY/_int8");
    }
}
