//! Parsing within a budget of work.
//!
//! sqlparser backtracks: at a nested call, `CAST`, `NOT (`, `CASE`, dotted name and more,
//! it may parse what follows once, find it is not what it tried, and parse it again another
//! way, so the work on a token can double or triple with each level it is nested in. Found
//! by fuzzing and measured in a release build: 16 levels of `CAST(` left unclosed parsed
//! for 50 s in the Postgres dialect, 16 of `NOT (` for 59 s; 70 tokens inside 13 calls for
//! a third of a second. No shape of text bounds that for every construct, and a parse
//! cannot be interrupted from outside. So the parse counts its own work instead: the
//! dialect it parses with is the door's own, wrapped ([`Budgeted`]) to count every
//! expression the parser starts (sqlparser asks the dialect first, at each one), and to
//! fail the parse once the count passes a budget proportional to the statement's tokens
//! (`[sql] parse_steps_per_token`, 8). The failure is the parser's `RecursionLimitExceeded`,
//! which sqlparser's backtracking passes on instead of trying another way, so a statement
//! over its budget ends at once. Statements that parse without backtracking take a step or
//! two per token; the budget is far above that.
//!
//! The wrapper forwards every other method of sqlparser's `Dialect` to the dialect it
//! wraps, `dialect()` included (which `dialect_of!` checks), so the parser behaves exactly
//! as with that dialect (tested over the SQL corpora).

use std::any::TypeId;
use std::cell::Cell;
use std::collections::VecDeque;
use std::iter::Peekable;
use std::str::Chars;

use basin_core::{Error, ErrorKind, Result};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    ColumnOption, Expr, GranteesType, Ident, ObjectNamePart, Statement,
};
use datafusion::sql::sqlparser::dialect::{Dialect as SqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::guard::{Dialect, Shape, StatementLimits};

/// A door's dialect that counts the expressions the parser starts, and fails the parse past
/// `budget` of them.
#[derive(Debug)]
pub(crate) struct Budgeted {
    inner: &'static dyn SqlDialect,
    steps: Cell<u64>,
    budget: u64,
}

impl Budgeted {
    pub(crate) fn new(dialect: Dialect, budget: u64) -> Self {
        Self {
            inner: dialect.tokenizer_dialect(),
            steps: Cell::new(0),
            budget,
        }
    }

    /// Expressions started so far.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> u64 {
        self.steps.get()
    }

    fn exhausted(&self) -> bool {
        self.steps.get() > self.budget
    }
}

/// The budget of a statement of `shape`: `[sql] parse_steps_per_token` for each of its
/// tokens, and for a short one as many as for 2,048 tokens (room for the legitimately
/// nested: the Postgres dialect parses 14 nested calls in 16,384 steps, each level doubling
/// them even when the statement is valid).
pub(crate) fn budget(shape: &Shape, limits: &StatementLimits) -> u64 {
    limits
        .parse_steps_per_token
        .saturating_mul(shape.tokens.max(2048) as u64)
}

/// The error of a parse stopped by its budget.
fn over_budget(budgeted: &Budgeted, shape: &Shape, limits: &StatementLimits) -> Error {
    Error::new(
        ErrorKind::Limit,
        format!(
            "parsing the statement took more than its budget of {} steps (`[sql] \
             parse_steps_per_token`: {} for each of its {} tokens, at least 2048 tokens' \
             worth): the parser tried its nested calls, casts, CASEs or subqueries again and \
             again",
            budgeted.budget, limits.parse_steps_per_token, shape.tokens
        ),
    )
    .with_hint(
        "nest less: compute inner results in a common table expression (WITH) or a view and \
         use its columns; check the statement for an unclosed parenthesis or CASE",
    )
}

/// Parses `sql` (already checked by the guard, which measured `shape`) with DataFusion's
/// parser in Basin's dialect, within its budget.
pub(crate) fn parse_basin(
    sql: &str,
    shape: &Shape,
    limits: &StatementLimits,
) -> Result<VecDeque<DfStatement>> {
    let dialect = Budgeted::new(Dialect::Basin, budget(shape, limits));
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) => Ok(statements),
        Err(_) if dialect.exhausted() => Err(over_budget(&dialect, shape, limits)),
        // The parser's error, under the diagnostics DataFusion may wrap it in.
        Err(e) => Err(match e.find_root() {
            datafusion::error::DataFusionError::SQL(parse, _) => {
                crate::errors::syntax_error(parse, Some(sql))
            }
            other => Error::invalid(other.to_string()),
        }),
    }
}

/// Parses `sql` in the Postgres dialect within its budget, only to find whether the
/// parser's work stays within it; `Err` only when it does not (a syntax error is the door's
/// own parser's to report).
pub fn check_postgres(sql: &str, shape: &Shape, limits: &StatementLimits) -> Result<()> {
    let dialect = Budgeted::new(Dialect::Postgres, budget(shape, limits));
    let parsed = Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Err(_) if dialect.exhausted() => Err(over_budget(&dialect, shape, limits)),
        _ => Ok(()),
    }
}

impl SqlDialect for Budgeted {
    fn dialect(&self) -> TypeId {
        self.inner.dialect()
    }

    /// Counts each expression the parser starts; past the budget, fails the parse in the
    /// one way backtracking does not retry.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<std::result::Result<Expr, ParserError>> {
        self.steps.set(self.steps.get() + 1);
        if self.exhausted() {
            return Some(Err(ParserError::RecursionLimitExceeded));
        }
        self.inner.parse_prefix(parser)
    }

    // Every other method, forwarded as it is.

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }

    fn is_nested_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_nested_delimited_identifier_start(ch)
    }

    fn peek_nested_delimited_identifier_quotes(
        &self,
        chars: Peekable<Chars<'_>>,
    ) -> Option<(char, Option<char>)> {
        self.inner.peek_nested_delimited_identifier_quotes(chars)
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.inner.identifier_quote_style(identifier)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.inner.is_custom_operator_part(ch)
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        self.inner.supports_string_literal_backslash_escape()
    }

    fn ignores_wildcard_escapes(&self) -> bool {
        self.inner.ignores_wildcard_escapes()
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.inner.supports_unicode_string_literal()
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.inner.supports_filter_during_aggregation()
    }

    fn supports_window_clause_named_window_reference(&self) -> bool {
        self.inner.supports_window_clause_named_window_reference()
    }

    fn supports_within_after_array_aggregation(&self) -> bool {
        self.inner.supports_within_after_array_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.inner.supports_group_by_expr()
    }

    fn supports_group_by_with_modifier(&self) -> bool {
        self.inner.supports_group_by_with_modifier()
    }

    fn supports_left_associative_joins_without_parens(&self) -> bool {
        self.inner.supports_left_associative_joins_without_parens()
    }

    fn supports_outer_join_operator(&self) -> bool {
        self.inner.supports_outer_join_operator()
    }

    fn supports_cross_join_constraint(&self) -> bool {
        self.inner.supports_cross_join_constraint()
    }

    fn supports_connect_by(&self) -> bool {
        self.inner.supports_connect_by()
    }

    fn supports_execute_immediate(&self) -> bool {
        self.inner.supports_execute_immediate()
    }

    fn supports_match_recognize(&self) -> bool {
        self.inner.supports_match_recognize()
    }

    fn supports_in_empty_list(&self) -> bool {
        self.inner.supports_in_empty_list()
    }

    fn supports_start_transaction_modifier(&self) -> bool {
        self.inner.supports_start_transaction_modifier()
    }

    fn supports_end_transaction_modifier(&self) -> bool {
        self.inner.supports_end_transaction_modifier()
    }

    fn supports_named_fn_args_with_eq_operator(&self) -> bool {
        self.inner.supports_named_fn_args_with_eq_operator()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.inner.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        self.inner.supports_named_fn_args_with_assignment_operator()
    }

    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        self.inner.supports_named_fn_args_with_rarrow_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.inner.supports_named_fn_args_with_expr_name()
    }

    fn supports_numeric_prefix(&self) -> bool {
        self.inner.supports_numeric_prefix()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.inner.supports_numeric_literal_underscores()
    }

    fn supports_window_function_null_treatment_arg(&self) -> bool {
        self.inner.supports_window_function_null_treatment_arg()
    }

    fn supports_dictionary_syntax(&self) -> bool {
        self.inner.supports_dictionary_syntax()
    }

    fn support_map_literal_syntax(&self) -> bool {
        self.inner.support_map_literal_syntax()
    }

    fn supports_lambda_functions(&self) -> bool {
        self.inner.supports_lambda_functions()
    }

    fn supports_parenthesized_set_variables(&self) -> bool {
        self.inner.supports_parenthesized_set_variables()
    }

    fn supports_comma_separated_set_assignments(&self) -> bool {
        self.inner.supports_comma_separated_set_assignments()
    }

    fn supports_select_wildcard_except(&self) -> bool {
        self.inner.supports_select_wildcard_except()
    }

    fn convert_type_before_value(&self) -> bool {
        self.inner.convert_type_before_value()
    }

    fn supports_triple_quoted_string(&self) -> bool {
        self.inner.supports_triple_quoted_string()
    }

    fn supports_trailing_commas(&self) -> bool {
        self.inner.supports_trailing_commas()
    }

    fn supports_limit_comma(&self) -> bool {
        self.inner.supports_limit_comma()
    }

    fn supports_string_literal_concatenation(&self) -> bool {
        self.inner.supports_string_literal_concatenation()
    }

    fn supports_string_literal_concatenation_with_newline(&self) -> bool {
        self.inner
            .supports_string_literal_concatenation_with_newline()
    }

    fn supports_projection_trailing_commas(&self) -> bool {
        self.inner.supports_projection_trailing_commas()
    }

    fn supports_from_trailing_commas(&self) -> bool {
        self.inner.supports_from_trailing_commas()
    }

    fn supports_column_definition_trailing_commas(&self) -> bool {
        self.inner.supports_column_definition_trailing_commas()
    }

    fn supports_object_name_double_dot_notation(&self) -> bool {
        self.inner.supports_object_name_double_dot_notation()
    }

    fn supports_struct_literal(&self) -> bool {
        self.inner.supports_struct_literal()
    }

    fn supports_empty_projections(&self) -> bool {
        self.inner.supports_empty_projections()
    }

    fn supports_select_expr_star(&self) -> bool {
        self.inner.supports_select_expr_star()
    }

    fn supports_from_first_select(&self) -> bool {
        self.inner.supports_from_first_select()
    }

    fn supports_pipe_operator(&self) -> bool {
        self.inner.supports_pipe_operator()
    }

    fn supports_user_host_grantee(&self) -> bool {
        self.inner.supports_user_host_grantee()
    }

    fn supports_match_against(&self) -> bool {
        self.inner.supports_match_against()
    }

    fn supports_select_wildcard_exclude(&self) -> bool {
        self.inner.supports_select_wildcard_exclude()
    }

    fn supports_select_exclude(&self) -> bool {
        self.inner.supports_select_exclude()
    }

    fn supports_create_table_multi_schema_info_sources(&self) -> bool {
        self.inner.supports_create_table_multi_schema_info_sources()
    }

    fn supports_select_modifiers(&self) -> bool {
        self.inner.supports_select_modifiers()
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        self.inner.parse_infix(parser, expr, precedence)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.inner.get_next_precedence(parser)
    }

    fn get_next_precedence_default(&self, parser: &Parser) -> Result<u8, ParserError> {
        self.inner.get_next_precedence_default(parser)
    }

    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.inner.parse_statement(parser)
    }

    fn parse_column_option(
        &self,
        parser: &mut Parser,
    ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError> {
        self.inner.parse_column_option(parser)
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.inner.prec_value(prec)
    }

    fn prec_unknown(&self) -> u8 {
        self.inner.prec_unknown()
    }

    fn describe_requires_table_keyword(&self) -> bool {
        self.inner.describe_requires_table_keyword()
    }

    fn allow_extract_custom(&self) -> bool {
        self.inner.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.inner.allow_extract_single_quotes()
    }

    fn supports_extract_comma_syntax(&self) -> bool {
        self.inner.supports_extract_comma_syntax()
    }

    fn supports_subquery_as_function_arg(&self) -> bool {
        self.inner.supports_subquery_as_function_arg()
    }

    fn supports_create_view_comment_syntax(&self) -> bool {
        self.inner.supports_create_view_comment_syntax()
    }

    fn supports_array_typedef_without_element_type(&self) -> bool {
        self.inner.supports_array_typedef_without_element_type()
    }

    fn supports_parens_around_table_factor(&self) -> bool {
        self.inner.supports_parens_around_table_factor()
    }

    fn supports_values_as_table_factor(&self) -> bool {
        self.inner.supports_values_as_table_factor()
    }

    fn supports_dollar_placeholder(&self) -> bool {
        self.inner.supports_dollar_placeholder()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.inner.supports_create_index_with_clause()
    }

    fn require_interval_qualifier(&self) -> bool {
        self.inner.require_interval_qualifier()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.inner.supports_explain_with_utility_options()
    }

    fn supports_asc_desc_in_column_definition(&self) -> bool {
        self.inner.supports_asc_desc_in_column_definition()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.inner.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.inner.supports_bitwise_shift_operators()
    }

    fn supports_nested_comments(&self) -> bool {
        self.inner.supports_nested_comments()
    }

    fn supports_multiline_comment_hints(&self) -> bool {
        self.inner.supports_multiline_comment_hints()
    }

    fn supports_eq_alias_assignment(&self) -> bool {
        self.inner.supports_eq_alias_assignment()
    }

    fn supports_try_convert(&self) -> bool {
        self.inner.supports_try_convert()
    }

    fn supports_bang_not_operator(&self) -> bool {
        self.inner.supports_bang_not_operator()
    }

    fn supports_listen_notify(&self) -> bool {
        self.inner.supports_listen_notify()
    }

    fn supports_load_data(&self) -> bool {
        self.inner.supports_load_data()
    }

    fn supports_load_extension(&self) -> bool {
        self.inner.supports_load_extension()
    }

    fn supports_top_before_distinct(&self) -> bool {
        self.inner.supports_top_before_distinct()
    }

    fn supports_boolean_literals(&self) -> bool {
        self.inner.supports_boolean_literals()
    }

    fn supports_show_like_before_in(&self) -> bool {
        self.inner.supports_show_like_before_in()
    }

    fn supports_comment_on(&self) -> bool {
        self.inner.supports_comment_on()
    }

    fn supports_create_table_select(&self) -> bool {
        self.inner.supports_create_table_select()
    }

    fn supports_partiql(&self) -> bool {
        self.inner.supports_partiql()
    }

    fn supports_constraint_keyword_without_name(&self) -> bool {
        self.inner.supports_constraint_keyword_without_name()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.inner.is_reserved_for_identifier(kw)
    }

    fn get_reserved_keywords_for_select_item_operator(&self) -> &[Keyword] {
        self.inner.get_reserved_keywords_for_select_item_operator()
    }

    fn get_reserved_grantees_types(&self) -> &[GranteesType] {
        self.inner.get_reserved_grantees_types()
    }

    fn supports_table_sample_before_alias(&self) -> bool {
        self.inner.supports_table_sample_before_alias()
    }

    fn supports_insert_set(&self) -> bool {
        self.inner.supports_insert_set()
    }

    fn supports_insert_table_function(&self) -> bool {
        self.inner.supports_insert_table_function()
    }

    fn supports_insert_format(&self) -> bool {
        self.inner.supports_insert_format()
    }

    fn supports_set_stmt_without_operator(&self) -> bool {
        self.inner.supports_set_stmt_without_operator()
    }

    fn is_column_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_column_alias(kw, parser)
    }

    fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_select_item_alias(explicit, kw, parser)
    }

    fn is_table_factor(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_factor(kw, parser)
    }

    fn is_table_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_alias(kw, parser)
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_factor_alias(explicit, kw, parser)
    }

    fn supports_table_versioning(&self) -> bool {
        self.inner.supports_table_versioning()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.inner.supports_string_escape_constant()
    }

    fn supports_table_hints(&self) -> bool {
        self.inner.supports_table_hints()
    }

    fn requires_single_line_comment_whitespace(&self) -> bool {
        self.inner.requires_single_line_comment_whitespace()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.inner.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.inner.supports_geometric_types()
    }

    fn supports_order_by_all(&self) -> bool {
        self.inner.supports_order_by_all()
    }

    fn supports_set_names(&self) -> bool {
        self.inner.supports_set_names()
    }

    fn supports_space_separated_column_options(&self) -> bool {
        self.inner.supports_space_separated_column_options()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.inner.supports_alter_column_type_using()
    }

    fn supports_comma_separated_drop_column_list(&self) -> bool {
        self.inner.supports_comma_separated_drop_column_list()
    }

    fn is_identifier_generating_function_name(
        &self,
        ident: &Ident,
        name_parts: &[ObjectNamePart],
    ) -> bool {
        self.inner
            .is_identifier_generating_function_name(ident, name_parts)
    }

    fn supports_notnull_operator(&self) -> bool {
        self.inner.supports_notnull_operator()
    }

    fn supports_data_type_signed_suffix(&self) -> bool {
        self.inner.supports_data_type_signed_suffix()
    }

    fn supports_interval_options(&self) -> bool {
        self.inner.supports_interval_options()
    }

    fn supports_create_table_like_parenthesized(&self) -> bool {
        self.inner.supports_create_table_like_parenthesized()
    }

    fn supports_semantic_view_table_factor(&self) -> bool {
        self.inner.supports_semantic_view_table_factor()
    }

    fn supports_quote_delimited_string(&self) -> bool {
        self.inner.supports_quote_delimited_string()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        self.inner.supports_comment_optimizer_hint()
    }

    fn supports_double_ampersand_operator(&self) -> bool {
        self.inner.supports_double_ampersand_operator()
    }

    fn supports_binary_kw_as_cast(&self) -> bool {
        self.inner.supports_binary_kw_as_cast()
    }

    fn supports_select_wildcard_replace(&self) -> bool {
        self.inner.supports_select_wildcard_replace()
    }

    fn supports_select_wildcard_ilike(&self) -> bool {
        self.inner.supports_select_wildcard_ilike()
    }

    fn supports_select_wildcard_rename(&self) -> bool {
        self.inner.supports_select_wildcard_rename()
    }

    fn supports_optimize_table(&self) -> bool {
        self.inner.supports_optimize_table()
    }

    fn supports_install(&self) -> bool {
        self.inner.supports_install()
    }

    fn supports_detach(&self) -> bool {
        self.inner.supports_detach()
    }

    fn supports_prewhere(&self) -> bool {
        self.inner.supports_prewhere()
    }

    fn supports_with_fill(&self) -> bool {
        self.inner.supports_with_fill()
    }

    fn supports_limit_by(&self) -> bool {
        self.inner.supports_limit_by()
    }

    fn supports_interpolate(&self) -> bool {
        self.inner.supports_interpolate()
    }

    fn supports_settings(&self) -> bool {
        self.inner.supports_settings()
    }

    fn supports_select_format(&self) -> bool {
        self.inner.supports_select_format()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};

    use super::*;
    use crate::guard;

    /// Every statement of the SQL corpora (the TPC-H queries, the policy and guard fuzz
    /// corpora), as text.
    fn corpus() -> Vec<(String, String)> {
        ["policy", "guard"]
            .into_iter()
            .flat_map(basin_fuzz::corpus)
            .filter_map(|(name, bytes)| Some((name, String::from_utf8(bytes).ok()?)))
            .collect()
    }

    fn limits() -> StatementLimits {
        StatementLimits::default()
    }

    #[test]
    fn the_wrapped_dialects_parse_exactly_as_their_own() {
        let mut compared = 0;
        for (name, sql) in corpus() {
            for dialect in [Dialect::Basin, Dialect::Postgres] {
                let Ok(shape) = guard::check(&sql, dialect, &limits()) else {
                    continue;
                };
                let sql = sql.clone();
                // On a large stack: the corpora hold deep statements.
                let same = std::thread::Builder::new()
                    .stack_size(crate::DEFAULT_PLANNER_STACK)
                    .spawn(move || {
                        let budgeted = Budgeted::new(dialect, budget(&shape, &limits()));
                        let own: &dyn SqlDialect = match dialect {
                            Dialect::Basin => &GenericDialect {},
                            Dialect::Postgres => &PostgreSqlDialect {},
                        };
                        let ours = Parser::new(&budgeted)
                            .try_with_sql(&sql)
                            .and_then(|mut p| p.parse_statements());
                        // Past its budget, the dialect's own parser could take hours.
                        if budgeted.exhausted() {
                            return None;
                        }
                        let theirs = Parser::parse_sql(own, &sql);
                        Some(format!("{theirs:?}") == format!("{ours:?}"))
                    })
                    .unwrap()
                    .join()
                    .unwrap();
                match same {
                    Some(true) => compared += 1,
                    Some(false) => panic!("{name} ({dialect:?}) parses differently when wrapped"),
                    None => {}
                }
            }
        }
        assert!(compared > 100, "only {compared} statements compared");
    }

    #[test]
    fn statements_that_parse_once_take_a_few_steps_a_token() {
        let mut worst = 0f64;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/tpch/queries");
        for entry in std::fs::read_dir(dir).unwrap() {
            let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for dialect in [Dialect::Basin, Dialect::Postgres] {
                let shape = guard::check(&sql, dialect, &limits()).unwrap();
                let budgeted = Budgeted::new(dialect, u64::MAX);
                Parser::new(&budgeted)
                    .try_with_sql(&sql)
                    .and_then(|mut p| p.parse_statements())
                    .unwrap();
                worst = worst.max(budgeted.steps() as f64 / shape.tokens as f64);
            }
        }
        assert!(worst > 0.0 && worst < 4.0, "{worst} steps a token");
    }

    #[test]
    fn backtracking_past_the_budget_ends_the_parse_with_a_limit_error() {
        // Parsing recurses deeper than a test thread's stack holds in a debug build.
        std::thread::Builder::new()
            .stack_size(crate::DEFAULT_PLANNER_STACK)
            .spawn(backtracking_past_the_budget)
            .unwrap()
            .join()
            .unwrap();
    }

    fn backtracking_past_the_budget() {
        // Each took tens of seconds to parse in a release build.
        for sql in [
            format!("SELECT {}1 +", "CAST(".repeat(16)),
            format!("SELECT {}1 +", "NOT (".repeat(16)),
            format!("SELECT {}", "CASE WHEN x THEN ".repeat(22)),
            format!("SELECT ({}.)", "t.a".repeat(22)),
        ] {
            for dialect in [Dialect::Basin, Dialect::Postgres] {
                let shape = guard::check(&sql, dialect, &limits()).unwrap();
                let refused = match dialect {
                    Dialect::Basin => parse_basin(&sql, &shape, &limits()).map(|_| ()),
                    Dialect::Postgres => check_postgres(&sql, &shape, &limits()),
                };
                let e = refused.expect_err(&sql);
                assert_eq!(
                    e.kind(),
                    ErrorKind::Limit,
                    "{sql} ({dialect:?}): {}",
                    e.message
                );
            }
        }
        // A statement within its budget that does not parse is a syntax error.
        let shape = guard::check("SELECT (1", Dialect::Basin, &limits()).unwrap();
        let e = parse_basin("SELECT (1", &shape, &limits()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        check_postgres("SELECT (1", &shape, &limits()).unwrap();
    }
}
