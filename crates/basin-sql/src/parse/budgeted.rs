//! [`Budgeted`]: a door's dialect, wrapped to count the expressions the parser starts and to
//! stop the parse past its budget. Every other method of sqlparser's `Dialect` is forwarded
//! to the dialect it wraps, so the parser behaves exactly as with that one.

use std::any::TypeId;
use std::cell::Cell;
use std::iter::Peekable;
use std::str::Chars;

use datafusion::sql::sqlparser::ast::{
    ColumnOption, Expr, GranteesType, Ident, ObjectNamePart, Statement,
};
use datafusion::sql::sqlparser::dialect::{Dialect as SqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use crate::guard::Dialect;

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

    /// The expressions the parse may start.
    pub(super) fn budget(&self) -> u64 {
        self.budget
    }

    /// Expressions started so far.
    #[cfg(test)]
    pub(crate) fn steps(&self) -> u64 {
        self.steps.get()
    }

    /// Whether the parse went past its budget.
    pub(super) fn exhausted(&self) -> bool {
        self.steps.get() > self.budget
    }
}

/// Trait methods that call the wrapped dialect's method of the same name with the same
/// arguments.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret {
            self.inner.$name($($arg),*)
        })*
    };
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
    forward! {
        fn is_delimited_identifier_start(&self, ch: char) -> bool;
        fn is_nested_delimited_identifier_start(&self, ch: char) -> bool;
        fn peek_nested_delimited_identifier_quotes(&self, chars: Peekable<Chars<'_>>)
            -> Option<(char, Option<char>)>;
        fn identifier_quote_style(&self, identifier: &str) -> Option<char>;
        fn is_identifier_start(&self, ch: char) -> bool;
        fn is_identifier_part(&self, ch: char) -> bool;
        fn is_custom_operator_part(&self, ch: char) -> bool;
        fn supports_string_literal_backslash_escape(&self) -> bool;
        fn ignores_wildcard_escapes(&self) -> bool;
        fn supports_unicode_string_literal(&self) -> bool;
        fn supports_filter_during_aggregation(&self) -> bool;
        fn supports_window_clause_named_window_reference(&self) -> bool;
        fn supports_within_after_array_aggregation(&self) -> bool;
        fn supports_group_by_expr(&self) -> bool;
        fn supports_group_by_with_modifier(&self) -> bool;
        fn supports_left_associative_joins_without_parens(&self) -> bool;
        fn supports_outer_join_operator(&self) -> bool;
        fn supports_cross_join_constraint(&self) -> bool;
        fn supports_connect_by(&self) -> bool;
        fn supports_execute_immediate(&self) -> bool;
        fn supports_match_recognize(&self) -> bool;
        fn supports_in_empty_list(&self) -> bool;
        fn supports_start_transaction_modifier(&self) -> bool;
        fn supports_end_transaction_modifier(&self) -> bool;
        fn supports_named_fn_args_with_eq_operator(&self) -> bool;
        fn supports_named_fn_args_with_colon_operator(&self) -> bool;
        fn supports_named_fn_args_with_assignment_operator(&self) -> bool;
        fn supports_named_fn_args_with_rarrow_operator(&self) -> bool;
        fn supports_named_fn_args_with_expr_name(&self) -> bool;
        fn supports_numeric_prefix(&self) -> bool;
        fn supports_numeric_literal_underscores(&self) -> bool;
        fn supports_window_function_null_treatment_arg(&self) -> bool;
        fn supports_dictionary_syntax(&self) -> bool;
        fn support_map_literal_syntax(&self) -> bool;
        fn supports_lambda_functions(&self) -> bool;
        fn supports_parenthesized_set_variables(&self) -> bool;
        fn supports_comma_separated_set_assignments(&self) -> bool;
        fn supports_select_wildcard_except(&self) -> bool;
        fn convert_type_before_value(&self) -> bool;
        fn supports_triple_quoted_string(&self) -> bool;
        fn supports_trailing_commas(&self) -> bool;
        fn supports_limit_comma(&self) -> bool;
        fn supports_string_literal_concatenation(&self) -> bool;
        fn supports_string_literal_concatenation_with_newline(&self) -> bool;
        fn supports_projection_trailing_commas(&self) -> bool;
        fn supports_from_trailing_commas(&self) -> bool;
        fn supports_column_definition_trailing_commas(&self) -> bool;
        fn supports_object_name_double_dot_notation(&self) -> bool;
        fn supports_struct_literal(&self) -> bool;
        fn supports_empty_projections(&self) -> bool;
        fn supports_select_expr_star(&self) -> bool;
        fn supports_from_first_select(&self) -> bool;
        fn supports_pipe_operator(&self) -> bool;
        fn supports_user_host_grantee(&self) -> bool;
        fn supports_match_against(&self) -> bool;
        fn supports_select_wildcard_exclude(&self) -> bool;
        fn supports_select_exclude(&self) -> bool;
        fn supports_create_table_multi_schema_info_sources(&self) -> bool;
        fn supports_select_modifiers(&self) -> bool;
        fn parse_infix(&self, parser: &mut Parser, expr: &Expr, precedence: u8)
            -> Option<Result<Expr, ParserError>>;
        fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>>;
        fn get_next_precedence_default(&self, parser: &Parser) -> Result<u8, ParserError>;
        fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>>;
        fn parse_column_option(&self, parser: &mut Parser)
            -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError>;
        fn prec_value(&self, prec: Precedence) -> u8;
        fn prec_unknown(&self) -> u8;
        fn describe_requires_table_keyword(&self) -> bool;
        fn allow_extract_custom(&self) -> bool;
        fn allow_extract_single_quotes(&self) -> bool;
        fn supports_extract_comma_syntax(&self) -> bool;
        fn supports_subquery_as_function_arg(&self) -> bool;
        fn supports_create_view_comment_syntax(&self) -> bool;
        fn supports_array_typedef_without_element_type(&self) -> bool;
        fn supports_parens_around_table_factor(&self) -> bool;
        fn supports_values_as_table_factor(&self) -> bool;
        fn supports_dollar_placeholder(&self) -> bool;
        fn supports_create_index_with_clause(&self) -> bool;
        fn require_interval_qualifier(&self) -> bool;
        fn supports_explain_with_utility_options(&self) -> bool;
        fn supports_asc_desc_in_column_definition(&self) -> bool;
        fn supports_factorial_operator(&self) -> bool;
        fn supports_bitwise_shift_operators(&self) -> bool;
        fn supports_nested_comments(&self) -> bool;
        fn supports_multiline_comment_hints(&self) -> bool;
        fn supports_eq_alias_assignment(&self) -> bool;
        fn supports_try_convert(&self) -> bool;
        fn supports_bang_not_operator(&self) -> bool;
        fn supports_listen_notify(&self) -> bool;
        fn supports_load_data(&self) -> bool;
        fn supports_load_extension(&self) -> bool;
        fn supports_top_before_distinct(&self) -> bool;
        fn supports_boolean_literals(&self) -> bool;
        fn supports_show_like_before_in(&self) -> bool;
        fn supports_comment_on(&self) -> bool;
        fn supports_create_table_select(&self) -> bool;
        fn supports_partiql(&self) -> bool;
        fn supports_constraint_keyword_without_name(&self) -> bool;
        fn is_reserved_for_identifier(&self, kw: Keyword) -> bool;
        fn get_reserved_keywords_for_select_item_operator(&self) -> &[Keyword];
        fn get_reserved_grantees_types(&self) -> &[GranteesType];
        fn supports_table_sample_before_alias(&self) -> bool;
        fn supports_insert_set(&self) -> bool;
        fn supports_insert_table_function(&self) -> bool;
        fn supports_insert_format(&self) -> bool;
        fn supports_set_stmt_without_operator(&self) -> bool;
        fn is_column_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool;
        fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool;
        fn is_table_factor(&self, kw: &Keyword, parser: &mut Parser) -> bool;
        fn is_table_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool;
        fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool;
        fn supports_table_versioning(&self) -> bool;
        fn supports_string_escape_constant(&self) -> bool;
        fn supports_table_hints(&self) -> bool;
        fn requires_single_line_comment_whitespace(&self) -> bool;
        fn supports_array_typedef_with_brackets(&self) -> bool;
        fn supports_geometric_types(&self) -> bool;
        fn supports_order_by_all(&self) -> bool;
        fn supports_set_names(&self) -> bool;
        fn supports_space_separated_column_options(&self) -> bool;
        fn supports_alter_column_type_using(&self) -> bool;
        fn supports_comma_separated_drop_column_list(&self) -> bool;
        fn is_identifier_generating_function_name(&self, ident: &Ident, name_parts: &[ObjectNamePart])
            -> bool;
        fn supports_notnull_operator(&self) -> bool;
        fn supports_data_type_signed_suffix(&self) -> bool;
        fn supports_interval_options(&self) -> bool;
        fn supports_create_table_like_parenthesized(&self) -> bool;
        fn supports_semantic_view_table_factor(&self) -> bool;
        fn supports_quote_delimited_string(&self) -> bool;
        fn supports_comment_optimizer_hint(&self) -> bool;
        fn supports_double_ampersand_operator(&self) -> bool;
        fn supports_binary_kw_as_cast(&self) -> bool;
        fn supports_select_wildcard_replace(&self) -> bool;
        fn supports_select_wildcard_ilike(&self) -> bool;
        fn supports_select_wildcard_rename(&self) -> bool;
        fn supports_optimize_table(&self) -> bool;
        fn supports_install(&self) -> bool;
        fn supports_detach(&self) -> bool;
        fn supports_prewhere(&self) -> bool;
        fn supports_with_fill(&self) -> bool;
        fn supports_limit_by(&self) -> bool;
        fn supports_interpolate(&self) -> bool;
        fn supports_settings(&self) -> bool;
        fn supports_select_format(&self) -> bool;
    }
}
