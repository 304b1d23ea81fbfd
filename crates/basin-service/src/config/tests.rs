//! The settings `basin.toml` gives, as `Settings::load` reads them.

use super::*;
use basin_core::Result;

/// The settings of a lakehouse folder whose basin.toml is `toml`.
fn settings(toml: &str) -> Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("basin.toml"), toml).unwrap();
    Settings::load(dir.path())
}

#[test]
fn handoff_pool_is_a_size_and_zero_written_either_way_turns_it_off() {
    let pool = |value: &str| {
        settings(&format!("[functions]\nhandoff_pool = {value}\n")).map(|s| s.runtime.handoff_pool)
    };
    assert_eq!(pool("\"512MiB\"").unwrap(), 512 << 20);
    assert_eq!(pool("\"0\"").unwrap(), 0);
    assert_eq!(pool("0").unwrap(), 0);
    let e = pool("\"lots\"").unwrap_err();
    assert!(e.message.contains("handoff_pool"), "{e}");
}

#[test]
fn copy_outputs_below_is_a_size_with_a_default() {
    let load = |toml: &str| settings(toml).map(|s| s.runtime.copy_outputs_below);
    assert_eq!(load("").unwrap(), basin_runtime::COPY_OUTPUTS_BELOW);
    let set = load("[functions]\ncopy_outputs_below = \"1MiB\"\n").unwrap();
    assert_eq!(set, 1 << 20);
    let e = load("[functions]\ncopy_outputs_below = \"big\"\n").unwrap_err();
    assert!(e.message.contains("copy_outputs_below"), "{e}");
}

#[test]
fn functions_run_ten_steps_of_nice_below_basin_unless_set_from_0_to_19() {
    let load = |toml: &str| settings(toml).map(|s| s.runtime.nice);
    assert_eq!(load("").unwrap(), basin_runtime::DEFAULT_NICE);
    assert_eq!(load("[functions]\nnice = 0\n").unwrap(), 0);
    assert_eq!(load("[functions]\nnice = 19\n").unwrap(), 19);
    let e = load("[functions]\nnice = 20\n").unwrap_err();
    assert!(
        e.message.contains("[functions] nice") && e.hint.is_some(),
        "{e}"
    );
    assert!(load("[functions]\nnice = -5\n").is_err());
}

#[test]
fn packages_are_built_from_source_only_when_asked() {
    let load = |toml: &str| settings(toml).map(|s| s.build_from_source);
    assert!(!load("").unwrap());
    assert!(load("[functions]\nbuild_from_source = true\n").unwrap());
    assert!(load("[functions]\nbuild_from_source = \"yes\"\n").is_err());
}

#[test]
fn gc_grace_and_the_postgres_message_size_have_defaults_and_floors() {
    let grace = |toml: &str| settings(toml).map(|s| s.maintenance.gc_grace);
    assert_eq!(grace("").unwrap(), std::time::Duration::from_secs(3600));
    let set = grace("[maintenance]\ngc_grace = \"6h\"\n").unwrap();
    assert_eq!(set, std::time::Duration::from_secs(6 * 3600));
    let e = grace("[maintenance]\ngc_grace = \"5s\"\n").unwrap_err();
    assert!(e.message.contains("gc_grace"), "{e}");
    let size = |toml: &str| settings(toml).map(|s| s.server.pg_max_message_size);
    assert_eq!(size("").unwrap(), 64 << 20);
    assert_eq!(
        size("[server]\npg_max_message_size = \"1MiB\"\n").unwrap(),
        1 << 20
    );
    // Never below what a login needs.
    assert_eq!(
        size("[server]\npg_max_message_size = \"1KiB\"\n").unwrap(),
        16 << 10
    );
}

#[test]
fn the_postgres_idle_timeout_and_prepared_cap_have_defaults() {
    let server = |toml: &str| settings(toml).map(|s| s.server);
    let defaults = server("").unwrap();
    assert_eq!(
        defaults.pg_idle_timeout,
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(defaults.pg_max_prepared, 1000);
    let set = server("[server]\npg_idle_timeout = \"off\"\npg_max_prepared = 0\n").unwrap();
    assert_eq!((set.pg_idle_timeout, set.pg_max_prepared), (None, 1));
    let e = server("[server]\npg_idle_timeout = \"soon\"\n").unwrap_err();
    assert!(e.message.contains("pg_idle_timeout"), "{e}");
}

#[test]
fn s3_reads_is_a_count_of_at_least_one_with_a_default() {
    let load = |toml: &str| settings(toml).map(|s| s.sql.s3_reads);
    assert_eq!(load("").unwrap(), basin_sql::S3_READS);
    assert_eq!(load("[sql]\ns3_reads = 4\n").unwrap(), 4);
    assert_eq!(load("[sql]\ns3_reads = 0\n").unwrap(), 1);
    let e = load("[sql]\ns3_reads = \"many\"\n").unwrap_err();
    assert!(e.message.contains("s3_reads"), "{e}");
}

#[test]
fn table_cache_is_a_count_with_a_default() {
    let load = |toml: &str| settings(toml).map(|s| s.sql.table_cache);
    assert_eq!(load("").unwrap(), basin_table::LOADED_TABLES);
    assert_eq!(load("[sql]\ntable_cache = 0\n").unwrap(), 0);
    let e = load("[sql]\ntable_cache = \"lots\"\n").unwrap_err();
    assert!(e.message.contains("table_cache"), "{e}");
}

#[test]
fn result_cache_is_a_size_with_a_default() {
    let load = |toml: &str| settings(toml).map(|s| s.sql.result_cache);
    assert_eq!(load("").unwrap(), basin_sql::RESULT_CACHE);
    assert_eq!(
        load("[sql]\nresult_cache = \"256MiB\"\n").unwrap(),
        256 << 20
    );
    assert_eq!(load("[sql]\nresult_cache = \"0\"\n").unwrap(), 0);
    let e = load("[sql]\nresult_cache = \"lots\"\n").unwrap_err();
    assert!(e.message.contains("result_cache"), "{e}");
}

#[test]
fn column_cache_is_a_size_with_a_default() {
    let load = |toml: &str| settings(toml).map(|s| s.sql.column_cache);
    assert_eq!(load("").unwrap(), basin_sql::COLUMN_CACHE);
    assert_eq!(load("[sql]\ncolumn_cache = \"2GiB\"\n").unwrap(), 2 << 30);
    assert_eq!(load("[sql]\ncolumn_cache = \"0\"\n").unwrap(), 0);
    let e = load("[sql]\ncolumn_cache = \"lots\"\n").unwrap_err();
    assert!(e.message.contains("column_cache"), "{e}");
}

#[test]
fn column_cache_disk_is_a_size_bounded_by_the_free_disk() {
    let load = |toml: &str| settings(toml).map(|s| (s.sql.column_cache_disk, s.sql.column_dir));
    let (bytes, dir) = load("").unwrap();
    assert!(
        bytes > 0 && bytes <= basin_sql::COLUMN_CACHE_DISK,
        "{bytes}"
    );
    assert!(dir.unwrap().ends_with(".basin/columns"));
    assert_eq!(load("[sql]\ncolumn_cache_disk = \"0\"\n").unwrap().0, 0);
    assert_eq!(
        load("[sql]\ncolumn_cache_disk = \"20GiB\"\n").unwrap().0,
        20 << 30
    );
    let e = load("[sql]\ncolumn_cache_disk = \"much\"\n").unwrap_err();
    assert!(e.message.contains("column_cache_disk"), "{e}");
    assert_eq!(
        super::sql::default_column_cache_disk(None),
        basin_sql::COLUMN_CACHE_DISK
    );
}

#[test]
fn statement_bounds_planning_and_query_threads_are_sql_settings_with_defaults() {
    let load = |toml: &str| settings(toml).map(|s| s.sql);
    let default = load("").unwrap();
    assert_eq!(default.statement, basin_sql::StatementLimits::default());
    assert_eq!(
        default.planner_threads,
        basin_sql::default_planner_threads()
    );
    assert_eq!(
        (default.query_threads, default.query_nice),
        (basin_sql::default_query_threads(), basin_sql::QUERY_NICE)
    );
    let set = load(
        "[sql]\nmax_statement_size = \"64KiB\"\nmax_expression_depth = 200\nmax_joins = 8\n\
         max_plan_nodes = 5000\nparse_steps_per_token = 32\nplanner_threads = 2\nplanner_stack = \"64MiB\"\n\
         query_threads = 3\nquery_nice = 0\n",
    )
    .unwrap();
    assert_eq!((set.query_threads, set.query_nice), (3, 0));
    assert_eq!(set.statement.max_size, 64 << 10);
    assert_eq!(set.statement.max_depth, 200);
    assert_eq!(set.statement.max_joins, 8);
    assert_eq!(set.statement.max_plan_nodes, 5000);
    assert_eq!(set.statement.parse_steps_per_token, 32);
    assert_eq!((set.planner_threads, set.planner_stack), (2, 64 << 20));
    // Below what a statement needs at all, the floors hold.
    let floor = load(
        "[sql]\nplanner_stack = \"1MiB\"\nmax_statement_size = 1\nquery_threads = 0\n\
         query_nice = 40\n",
    )
    .unwrap();
    assert_eq!(
        (floor.planner_stack, floor.statement.max_size),
        (8 << 20, 1 << 10)
    );
    assert_eq!((floor.query_threads, floor.query_nice), (1, 19));
    assert!(load("[sql]\npg_max_call_depth = 3\n").is_err());
}

#[test]
fn connection_slots_have_defaults_and_the_old_call_depth_setting_is_gone() {
    let load = |toml: &str| settings(toml).map(|s| s.server);
    let default = load("").unwrap();
    assert_eq!(
        (
            default.reserved_connections,
            default.max_connections_per_client,
            default.max_queries_per_reader,
            default.max_runs_per_writer
        ),
        (4, 64, 4, 2)
    );
    assert_eq!(default.handshake_timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        default.tcp_keepalive,
        Some(std::time::Duration::from_secs(60))
    );
    let off = load("[server]\ntcp_keepalive = \"off\"\n").unwrap();
    assert_eq!(off.tcp_keepalive, None);
    let set = load(
        "[server]\nreserved_connections = 0\nmax_connections_per_client = 2\n\
         max_queries_per_reader = 0\nmax_runs_per_writer = 3\nhandshake_timeout = \"1s\"\n",
    )
    .unwrap();
    assert_eq!(
        (
            set.reserved_connections,
            set.max_connections_per_client,
            set.max_queries_per_reader,
            set.max_runs_per_writer
        ),
        (0, 2, 1, 3)
    );
    assert_eq!(set.handshake_timeout, std::time::Duration::from_secs(1));
    let e = load("[server]\npg_max_call_depth = 12\n").unwrap_err();
    assert!(e.message.contains("pg_max_call_depth"), "{e}");
}

#[test]
fn the_bounds_on_what_callers_make_the_server_hold_have_defaults_and_floors() {
    let default = settings("").unwrap();
    assert_eq!(
        (
            default.server.max_runs_per_writer,
            default.server.max_uploads_per_writer,
            default.server.mcp_max_batch,
            default.server.audit_refusals_per_minute,
        ),
        (2, 2, 16, 30)
    );
    assert_eq!(
        (
            default.sql.statement.max_plan_nodes,
            default.sql.max_metadata_size
        ),
        (10_000, 256 << 20)
    );
    let set = settings(
        "[server]\nmax_runs_per_writer = 0\nmax_uploads_per_writer = 0\nmcp_max_batch = 0\n\
         audit_refusals_per_minute = 0\n\
         [sql]\nmax_plan_nodes = 5\nmax_metadata_size = \"1KiB\"\n",
    )
    .unwrap();
    // Below what any use needs, the floors hold; no refusal recorded one by one is a choice.
    assert_eq!(
        (
            set.server.max_runs_per_writer,
            set.server.max_uploads_per_writer,
            set.server.mcp_max_batch,
            set.server.audit_refusals_per_minute,
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        (set.sql.statement.max_plan_nodes, set.sql.max_metadata_size),
        (100, 1 << 20)
    );
}

#[test]
fn functions_get_only_the_secrets_basin_toml_declares() {
    let load = |toml: &str| settings(toml).map(|s| s.secrets);
    assert!(load("").unwrap().is_empty());
    let declared = load("[secrets]\nAPI_KEY = { env = \"STRIPE_KEY\" }\n").unwrap();
    assert_eq!(declared["API_KEY"], Secret::Env("STRIPE_KEY".into()));
    let e = load("[secrets]\nKEY = { env = \"BASIN_S3_SECRET_ACCESS_KEY\" }\n").unwrap_err();
    assert!(e.message.contains("BASIN_S3_SECRET_ACCESS_KEY"), "{e}");
    // A source's password variable is Basin's too.
    let e = load(
        "[sources.shop]\nurl = \"postgres://basin@db/shop\"\npassword_env = \"SHOP_PW\"\n\
         tables = [\"public.orders\"]\n[secrets]\nPW = { env = \"SHOP_PW\" }\n",
    )
    .unwrap_err();
    assert!(e.message.contains("SHOP_PW"), "{e}");
}

#[test]
fn declared_objects_sit_beside_the_settings_and_branch_rules() {
    let toml = r#"
[[branches.protect]]
pattern = "main"

[branches.dev]
from = "main"

[namespaces.sales]
[tables."sales.orders"]
columns = [{ name = "id", type = "long" }]
[tokens.ci]
role = "writer"
"#;
    let loaded = settings(toml).unwrap();
    assert!(loaded.protection.rule("main").is_some());
    assert!(loaded.protection.rule("dev").is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("basin.toml");
    std::fs::write(&path, toml).unwrap();
    let declared = crate::declared::Declaration::read(&path).unwrap();
    assert_eq!(declared.branch_decls["dev"].from.as_deref(), Some("main"));
    assert!(!declared.branch_decls.contains_key("protect"));
    assert_eq!(declared.tables["sales.orders"].columns[0].data_type, "long");
}
