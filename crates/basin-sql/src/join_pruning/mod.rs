//! Join filters that prune the probe side's row groups whatever shape DataFusion gives them.
//!
//! Once a hash join has built its side, DataFusion 53 pushes what it saw into the scan of the
//! other side as a dynamic filter, and the Parquet reader prunes files and row groups whose
//! statistics cannot match it. Two of the filter's shapes defeat that pruning:
//!
//! - **A partitioned join** routes each row to its partition's keys: `CASE
//!   hash_repartition(k) % 2 WHEN 0 THEN k >= 3 AND k <= 59999845 AND k IN (..) WHEN 1 THEN ..
//!   ELSE false END`. The pruner cannot read a `CASE` and keeps every row group.
//! - **An `IN` list of more than 20 keys** (the build side had up to DataFusion's
//!   `hash_join_inlist_pushdown_max_distinct_values`): the pruner rewrites at most 20 values
//!   into range tests, and keeps every row group for a longer list. The bounds beside it (the
//!   smallest and largest key) span the whole table when the keys are spread out.
//!
//! TPC-H q18 at scale 10 meets both: 99 orders survive its `HAVING`, the planner cannot know
//! that and joins them with lineitem in `Partitioned` mode, and all 468 of lineitem's row groups
//! were read although lineitem is sorted by `l_orderkey` and the 99 keys lie in fewer than 99
//! of them (apache/datafusion#21931 proposes a merged `IN` list upstream).
//!
//! The rule below wraps each dynamic filter of a Parquet scan in [`PruningForm`]. Rows are
//! still filtered by the join's own filter, unchanged; only the snapshot the pruner takes of it
//! is rewritten ([`for_pruning`]): a `CASE` becomes the union of its branches' keys (one range
//! of the smallest and largest, and one `IN` list of all), and an `IN` list becomes at most 20
//! ranges of its sorted keys, split at the widest gaps, which the pruner reads. Each rewrite is
//! implied by the filter it replaces (a row the `CASE` keeps met one branch, whose keys are in
//! the union; a key in a list lies in one of its ranges), so a row group the rewrite excludes
//! holds no row the filter keeps: pruning stays exact, only finer.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, DynamicFilterPhysicalExpr, InListExpr, Literal, lit,
};
use datafusion::physical_expr::{conjunction, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

/// The physical optimizer rule: every Parquet scan's dynamic filters wrapped in
/// [`PruningForm`]. Runs after DataFusion's rules, which push the filters into the scans.
#[derive(Debug)]
pub(crate) struct PruneByJoinKeys;

impl PhysicalOptimizerRule for PruneByJoinKeys {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(scan) = node.as_any().downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(config) = scan.data_source().as_any().downcast_ref::<FileScanConfig>() else {
                return Ok(Transformed::no(node));
            };
            let Some(parquet) = config.file_source.as_any().downcast_ref::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            let Some(predicate) = wrapped(parquet.filter()) else {
                return Ok(Transformed::no(node));
            };
            let mut config = config.clone();
            config.file_source = Arc::new(parquet.with_predicate(predicate));
            let scan = scan.clone().with_data_source(Arc::new(config));
            Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "prune_by_join_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `predicate` with its dynamic conjuncts wrapped; `None` when it has none (or they are
/// wrapped already).
fn wrapped(predicate: Option<Arc<dyn PhysicalExpr>>) -> Option<Arc<dyn PhysicalExpr>> {
    let predicate = predicate?;
    let mut changed = false;
    let conjuncts = split_conjunction(&predicate)
        .into_iter()
        .map(|c| {
            if c.as_any().is::<DynamicFilterPhysicalExpr>() {
                changed = true;
                Arc::new(PruningForm(Arc::clone(c))) as Arc<dyn PhysicalExpr>
            } else {
                Arc::clone(c)
            }
        })
        .collect::<Vec<_>>();
    changed.then(|| conjunction(conjuncts))
}

/// A join's dynamic filter whose snapshot, the form the Parquet pruner reads, is rewritten
/// by [`for_pruning`]; evaluated on rows, it is the filter itself.
#[derive(Debug, Eq)]
pub(crate) struct PruningForm(Arc<dyn PhysicalExpr>);

// By hand, as DataFusion's own expressions do (rust-lang/rust#78808: the derives cannot
// compare a field of `Arc<dyn PhysicalExpr>`).
impl PartialEq for PruningForm {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq(&other.0)
    }
}

impl Hash for PruningForm {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for PruningForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PruningForm({})", self.0)
    }
}

impl PhysicalExpr for PruningForm {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.0.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.0.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.0.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.0]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(PruningForm(children.swap_remove(0))))
    }

    /// The pruner snapshots bottom-up: the dynamic filter below is already its current
    /// expression by the time this is asked.
    fn snapshot(&self) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let current = self.0.snapshot()?.unwrap_or_else(|| Arc::clone(&self.0));
        Ok(Some(for_pruning(&current)))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_sql(f)
    }
}

/// The most terms a rewritten filter has: the pruner evaluates its predicate once per row
/// group and page, and DataFusion 53 works out each `AND`'s and `OR`'s type anew from its
/// whole subtree on every evaluation, so a filter of 200 equalities cost TPC-H q17 two seconds
/// at scale 1. DataFusion's own pruner rewrites `IN` lists of up to 20 values.
const MAX_TERMS: usize = 20;

/// A predicate implied by `expr` (true wherever `expr` is) that the Parquet pruner can read,
/// of at most [`MAX_TERMS`] ranges per key; `expr` itself when it says nothing the pruner could
/// use. A `CASE` (one branch per partition) gives the union of its branches' keys: the
/// smallest and largest key of any, and all their `IN` lists in one. An `IN` list becomes
/// ranges of its sorted values, split at the widest gaps. Conjuncts neither bounds nor lists
/// (a hash table lookup) are left out, which only makes the predicate weaker.
pub(crate) fn for_pruning(expr: &Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    let keys = match expr.as_any().downcast_ref::<CaseExpr>() {
        // A row the `CASE` keeps took one of its branches, and that branch was true. A
        // branch that is a false or null literal keeps nothing.
        Some(case) => {
            let branches: Vec<Keys> = case
                .when_then_expr()
                .iter()
                .map(|(_, then)| then)
                .chain(case.else_expr())
                .filter(|branch| !never_true(branch))
                .map(Keys::of)
                .collect();
            if branches.is_empty() {
                return lit(false);
            }
            Keys::union(branches)
        }
        None => Keys::of(expr),
    };
    keys.predicate().unwrap_or_else(|| Arc::clone(expr))
}

/// What a join filter, or one partition's branch of it, says about the probe side's keys.
#[derive(Default)]
struct Keys {
    /// `key >= min AND key <= max`, per key expression (one per join column).
    bounds: Vec<(Arc<dyn PhysicalExpr>, ScalarValue, ScalarValue)>,
    /// `key IN (values)`: a single-column join's keys, when the build side was small.
    list: Option<(Arc<dyn PhysicalExpr>, Vec<ScalarValue>)>,
}

impl Keys {
    /// The bounds and the `IN` list among `filter`'s conjuncts (DataFusion writes a join
    /// filter as `k >= min AND k <= max AND k IN (..)`).
    fn of(filter: &Arc<dyn PhysicalExpr>) -> Self {
        let mut mins = Vec::new();
        let mut maxes = Vec::new();
        let mut list = None;
        for conjunct in split_conjunction(filter) {
            let any = conjunct.as_any();
            if let Some(binary) = any.downcast_ref::<BinaryExpr>()
                && let Some(value) = literal(binary.right())
            {
                let bound = (Arc::clone(binary.left()), value);
                match binary.op() {
                    Operator::GtEq => mins.push(bound),
                    Operator::LtEq => maxes.push(bound),
                    _ => {}
                }
            } else if let Some(in_list) = any.downcast_ref::<InListExpr>()
                && !in_list.negated()
                && list.is_none()
            {
                let values: Option<Vec<ScalarValue>> = in_list.list().iter().map(literal).collect();
                list = values.map(|values| (Arc::clone(in_list.expr()), values));
            }
        }
        let bounds = mins
            .into_iter()
            .filter_map(|(key, min)| {
                let (_, max) = maxes.iter().find(|(k, _)| k == &key)?;
                Some((key, min, max.clone()))
            })
            .collect();
        Keys { bounds, list }
    }

    /// What every one of `branches` allows: the bounds of the keys all of them bound, and
    /// one `IN` list when each has one of the same key.
    fn union(branches: Vec<Keys>) -> Self {
        let mut branches = branches.into_iter();
        let mut union = branches.next().unwrap_or_default();
        for branch in branches {
            union.bounds.retain_mut(|(key, min, max)| {
                let Some((_, other_min, other_max)) = branch.bounds.iter().find(|(k, ..)| k == key)
                else {
                    return false;
                };
                if other_min.partial_cmp(min) == Some(Ordering::Less) {
                    *min = other_min.clone();
                }
                if other_max.partial_cmp(max) == Some(Ordering::Greater) {
                    *max = other_max.clone();
                }
                true
            });
            union.list = match (union.list, branch.list) {
                (Some((key, mut values)), Some((other_key, other_values)))
                    if *key == *other_key =>
                {
                    values.extend(other_values);
                    Some((key, values))
                }
                _ => None,
            };
        }
        union
    }

    /// The bounds, and the list as at most [`MAX_TERMS`] ranges; `None` when there are
    /// neither.
    fn predicate(self) -> Option<Arc<dyn PhysicalExpr>> {
        let mut terms: Vec<Arc<dyn PhysicalExpr>> = self
            .bounds
            .into_iter()
            .map(|(key, min, max)| range(&key, min, max))
            .collect();
        if let Some((key, values)) = self.list {
            terms.push(disjunction(
                ranges(values)
                    .into_iter()
                    .map(|(low, high)| range(&key, low, high))
                    .collect(),
            ));
        }
        (!terms.is_empty()).then(|| conjunction(terms))
    }
}

/// `values` (in any order; nulls, which match nothing, dropped) as at most [`MAX_TERMS`]
/// sorted ranges that cover them all: split at the widest gaps where the values have distances (numbers, dates), else into
/// runs of about equal counts.
fn ranges(mut values: Vec<ScalarValue>) -> Vec<(ScalarValue, ScalarValue)> {
    values.retain(|v| !v.is_null());
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    values.dedup();
    let n = values.len();
    if n <= MAX_TERMS {
        return values.into_iter().map(|v| (v.clone(), v)).collect();
    }
    // Split after these positions.
    let gaps: Option<Vec<usize>> = values.windows(2).map(|w| w[0].distance(&w[1])).collect();
    let mut splits: Vec<usize> = match gaps {
        Some(gaps) => {
            let mut widest: Vec<usize> = (0..gaps.len()).collect();
            widest.sort_by_key(|&i| std::cmp::Reverse(gaps[i]));
            widest.truncate(MAX_TERMS - 1);
            widest
        }
        None => (1..MAX_TERMS).map(|k| k * n / MAX_TERMS - 1).collect(),
    };
    splits.sort_unstable();
    let mut ranges = Vec::with_capacity(MAX_TERMS);
    let mut start = 0;
    for end in splits.into_iter().chain([n - 1]) {
        ranges.push((values[start].clone(), values[end].clone()));
        start = end + 1;
    }
    ranges
}

/// `key = low` or `key >= low AND key <= high`.
fn range(
    key: &Arc<dyn PhysicalExpr>,
    low: ScalarValue,
    high: ScalarValue,
) -> Arc<dyn PhysicalExpr> {
    let compare = |op, value| {
        Arc::new(BinaryExpr::new(Arc::clone(key), op, lit(value))) as Arc<dyn PhysicalExpr>
    };
    if low == high {
        return compare(Operator::Eq, low);
    }
    Arc::new(BinaryExpr::new(
        compare(Operator::GtEq, low),
        Operator::And,
        compare(Operator::LtEq, high),
    ))
}

/// The value of a literal expression.
fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    expr.as_any()
        .downcast_ref::<Literal>()
        .map(|l| l.value().clone())
}

/// A `false` or null literal.
fn never_true(expr: &Arc<dyn PhysicalExpr>) -> bool {
    literal(expr).is_some_and(|v| v.is_null() || v == ScalarValue::Boolean(Some(false)))
}

/// `a OR b OR ..` as a balanced tree (the pruner recurses once per level); `false` when empty.
fn disjunction(mut terms: Vec<Arc<dyn PhysicalExpr>>) -> Arc<dyn PhysicalExpr> {
    match terms.len() {
        0 => lit(false),
        1 => terms.swap_remove(0),
        n => {
            let right = terms.split_off(n / 2);
            Arc::new(BinaryExpr::new(
                disjunction(terms),
                Operator::Or,
                disjunction(right),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
