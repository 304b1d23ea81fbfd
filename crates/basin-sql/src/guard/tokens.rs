//! What a token is to the measure: a literal, an operator, or punctuation.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Whether a token is a literal value: a number or a string of any quoting form.
pub(super) fn is_literal(token: &Token) -> bool {
    !matches!(
        token,
        Token::Word(_) | Token::Whitespace(_) | Token::EOF | Token::Char(_)
    ) && !is_operator(token)
        && !is_punctuation(token)
}

/// Brackets, commas, periods, the statement's end and placeholders: neither terms nor
/// operators.
fn is_punctuation(token: &Token) -> bool {
    matches!(
        token,
        Token::Comma
            | Token::LParen
            | Token::RParen
            | Token::LBracket
            | Token::RBracket
            | Token::LBrace
            | Token::RBrace
            | Token::Period
            | Token::SemiColon
            | Token::Placeholder(_)
    )
}

/// Whether a token joins two terms (or applies to one) in an expression, a query or a join:
/// every symbol but brackets, commas, periods and the statement's end, and the keywords that
/// act as operators.
pub(super) fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::IN
                        | Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::MINUS
                        | Keyword::JOIN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::OVERLAPS
                        | Keyword::DIV
                        | Keyword::MOD
                        | Keyword::XOR
                        | Keyword::REGEXP
                        | Keyword::RLIKE
                        | Keyword::ESCAPE
                )
        }
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Whitespace(_) => false,
        other => !is_punctuation(other),
    }
}
