//! The helpers every CLI test uses: a fresh lakehouse in a temporary folder, driven through
//! the real `basin` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Lake {
    dir: tempfile::TempDir,
    /// The user-level cache (environments) this lakehouse's commands use: its own, unless
    /// made with `sharing_cache`, so tests see builds as a new user would.
    cache: PathBuf,
    _own_cache: Option<tempfile::TempDir>,
}

impl Lake {
    pub fn new() -> Self {
        let own = tempfile::tempdir().unwrap();
        Self::init(own.path().to_path_buf(), Some(own))
    }

    /// A new lakehouse whose commands use `other`'s user cache (as two lakehouses of one
    /// user do).
    pub fn sharing_cache(other: &Lake) -> Self {
        Self::init(other.cache.clone(), None)
    }

    fn init(cache: PathBuf, own: Option<tempfile::TempDir>) -> Self {
        let lake = Self {
            dir: tempfile::tempdir().unwrap(),
            cache,
            _own_cache: own,
        };
        lake.ok(&["init", "."]);
        lake
    }

    /// A lakehouse whose `main` holds `sales.orders` (two rows) from `orders.csv`.
    pub fn with_orders() -> Self {
        let lake = Self::new();
        lake.write("orders.csv", ORDERS);
        lake.ok(&["import", "orders.csv", "--table", "sales.orders"]);
        lake
    }

    /// Appends `orders.csv` (two rows) to `sales.orders` on `branch`.
    pub fn append_orders(&self, branch: &str) {
        self.ok(&[
            "import",
            "orders.csv",
            "--table",
            "sales.orders",
            "--branch",
            branch,
        ]);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(&[], args)
    }

    /// Runs with `vars` set in the command's environment.
    pub fn run_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(args)
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_basin"));
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("BASIN_HOME")
            .env("BASIN_CACHE_DIR", &self.cache);
        command
    }

    /// Runs as the local user `author` (`BASIN_AUTHOR`), and expects success; returns stdout.
    pub fn ok_as(&self, author: &str, args: &[&str]) -> String {
        let out = self
            .command(args)
            .env("BASIN_AUTHOR", author)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "basin {args:?} as {author} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs as the local user `author` and expects a user error (exit 1); returns stderr.
    pub fn fails_as(&self, author: &str, args: &[&str]) -> String {
        let out = self
            .command(args)
            .env("BASIN_AUTHOR", author)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "basin {args:?} as {author} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "basin {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects a user error (exit 1); returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "basin {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `SELECT expr` on `at`, as one CSV value.
    pub fn scalar(&self, sql: &str, at: &str) -> String {
        let out = self.ok(&["query", sql, "--ref", at, "--format", "csv"]);
        out.lines().nth(1).unwrap_or_default().to_string()
    }

    pub fn commits(&self, at: &str) -> usize {
        self.json(&["log", at, "-n", "1000"])
            .as_array()
            .unwrap()
            .len()
    }
}

pub const ORDERS: &str = "id,amount,day\n1,10.50,2024-01-01\n2,3.25,2024-01-02\n";
