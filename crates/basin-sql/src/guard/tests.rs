use basin_core::ErrorKind;

use super::*;

const LIMITS: StatementLimits = StatementLimits {
    max_size: 1 << 20,
    parse_steps_per_token: 64,
    max_depth: 100,
    max_joins: 10,
    max_plan_nodes: 10_000,
};

fn bound(sql: &str, dialect: Dialect) -> Option<Bound> {
    check_bound(sql, dialect, &LIMITS).err().map(|(b, _)| b)
}

fn parsed_shape(sql: &str, dialect: Dialect) -> Option<(usize, usize)> {
    crate::fuzz::parsed_shape(sql, dialect).expect("the parser does not panic")
}

#[test]
fn a_chain_counts_its_operators_and_a_list_its_deepest_item() {
    let chain = |n: usize, op: &str| format!("SELECT {}", vec!["x"; n].join(op));
    for op in [" + ", " || ", " AND ", " OR ", " = ", "::int, "] {
        let shape = check(&chain(50, op), Dialect::Basin, &LIMITS).unwrap();
        assert!(shape.depth >= 49 || op.contains(','), "{op}: {shape:?}");
    }
    assert_eq!(bound(&chain(101, " + "), Dialect::Basin), None);
    assert_eq!(
        bound(&chain(102, " + "), Dialect::Basin),
        Some(Bound::Depth)
    );
    // A list of any length is as deep as its deepest item.
    let list = format!("SELECT x IN ({})", vec!["1"; 5000].join(", "));
    let wide = StatementLimits::default();
    assert!(check(&list, Dialect::Basin, &wide).unwrap().depth < 5);
    // Unary chains and casts nest too.
    assert_eq!(
        bound(&format!("SELECT {}1", "- ".repeat(101)), Dialect::Postgres),
        Some(Bound::Depth)
    );
    assert_eq!(
        bound(
            &format!("SELECT 1{}", "::int".repeat(101)),
            Dialect::Postgres
        ),
        Some(Bound::Depth)
    );
    // CASE ... END is a level like a parenthesis.
    let cases = |n: usize| {
        format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(n),
            " END".repeat(n)
        )
    };
    assert_eq!(bound(&cases(99), Dialect::Basin), None);
    assert_eq!(bound(&cases(101), Dialect::Basin), Some(Bound::Depth));
}

#[test]
fn the_depth_after_a_deep_level_closes_still_counts_it() {
    // A chain whose first term is a deep chain is as deep as both together.
    let sql = format!("SELECT ({}1) {}", "1 + ".repeat(60), "+ 1 ".repeat(60));
    assert_eq!(bound(&sql, Dialect::Basin), Some(Bound::Depth));
    // ... and statements are measured one by one.
    let two = format!(
        "SELECT {};SELECT {}",
        "1+".repeat(80) + "1",
        "1+".repeat(80) + "1"
    );
    assert_eq!(bound(&two, Dialect::Basin), None);
}

#[test]
fn levels_count_through_every_quoting_form_the_parser_sees() {
    let calls = |n: usize| format!("{}1{}", "abs(".repeat(n), ")".repeat(n));
    // Text that hides a quote character from a scanner that knows only '...' and "...":
    // the parser sees the calls after it, and so does the guard.
    for prefix in [
        "$$'$$",
        "$q$'$q$",
        "E'\\''",
        "'it''s'",
        "U&'\\0041'",
        "/* ' /* ' */ */",
    ] {
        let sql = format!("SELECT {prefix}, {}", calls(9));
        let shape = check(&sql, Dialect::Postgres, &LIMITS).unwrap();
        assert_eq!(shape.nesting, 9, "{sql}");
    }
    // Parentheses inside strings, quoted names and comments are not levels.
    for hidden in [
        "'f(f(f(f(f(f(f(f(f('",
        "$$ f(f(f(f(f(f(f(f(f( $$",
        "-- f(f(f(f(f(f(f(f(f(\n1",
    ] {
        let sql = format!("SELECT {hidden}");
        assert_eq!(
            check(&sql, Dialect::Postgres, &LIMITS).unwrap().nesting,
            0,
            "{sql}"
        );
    }
    // Every kind of level counts: subqueries, lists, arrays, CASEs, calls, and the parts
    // of a dotted name.
    let mixed = "SELECT (SELECT x IN (ARRAY[CASE WHEN abs((t.a.b)) > 0 THEN [1] END]))";
    assert_eq!(check(mixed, Dialect::Basin, &LIMITS).unwrap().nesting, 8);
}

#[test]
fn joins_count_join_and_from_list_commas() {
    let joins = |n: usize| {
        format!(
            "SELECT 1 FROM t0{}",
            (1..=n)
                .map(|i| format!(" JOIN t{i} ON true"))
                .collect::<String>()
        )
    };
    assert_eq!(bound(&joins(10), Dialect::Basin), None);
    assert_eq!(bound(&joins(11), Dialect::Basin), Some(Bound::Joins));
    let commas = |n: usize| {
        format!(
            "SELECT a, b, c, d, e, f, g, h, i, j, k FROM {} WHERE x IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11) GROUP BY a, b, c, d, e, f, g, h, i, j, k",
            (0..=n)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    assert_eq!(bound(&commas(10), Dialect::Basin), None);
    assert_eq!(bound(&commas(11), Dialect::Basin), Some(Bound::Joins));
}

#[test]
fn a_statement_past_the_size_limit_is_refused_before_it_is_read() {
    let limits = StatementLimits {
        max_size: 1024,
        ..LIMITS
    };
    let sql = format!("SELECT '{}'", "x".repeat(1100));
    let (bound, e) = check_bound(&sql, Dialect::Basin, &limits).unwrap_err();
    assert_eq!(bound, Bound::Size);
    assert_eq!(e.kind(), ErrorKind::Limit);
}

#[test]
fn the_guard_never_underestimates_what_the_parser_builds() {
    // Generated statements mixing the constructs that nest, each form of quoting and
    // comments, in both dialects: what passes the guard parses into a tree no deeper
    // (and with calls nested no deeper than its nesting) than the guard measured.
    let pieces = [
        "1",
        "x",
        "'a(b'",
        "$$)($$",
        "\"q(\"",
        "-- (\n",
        "/* ( /* ) */ */",
        "E'\\')'",
        "abs(",
        "coalesce(",
        "(",
        ")",
        " + ",
        " * ",
        " || ",
        " AND ",
        " OR ",
        " NOT ",
        " - ",
        "::int",
        " IS NULL",
        " BETWEEN 1 AND ",
        "CASE WHEN ",
        " THEN ",
        " END",
        " IN (",
        ", ",
        "[",
        "]",
        " LIKE ",
        "-",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut parsed = 0;
    for _ in 0..3000 {
        let n = (next() % 80) as usize + 1;
        let mut sql = "SELECT ".to_string();
        for _ in 0..n {
            sql.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        for dialect in [Dialect::Basin, Dialect::Postgres] {
            let Ok(shape) = check(&sql, dialect, &LIMITS) else {
                continue;
            };
            if let Some((depth, calls)) = parsed_shape(&sql, dialect) {
                parsed += 1;
                assert!(
                    shape.depth + 1 >= depth,
                    "{sql} ({dialect:?}): {shape:?}, depth {depth}"
                );
                assert!(
                    shape.nesting >= calls,
                    "{sql} ({dialect:?}): {shape:?}, calls {calls}"
                );
            }
        }
    }
    assert!(parsed > 100, "only {parsed} generated statements parsed");
}
