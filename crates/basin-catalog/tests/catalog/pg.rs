//! A real Postgres server for the suite: Debian's `postgresql` binaries, started once per
//! test binary in a temporary folder on a free loopback port, and a fresh database per test
//! so tests run in parallel.
//!
//! A static's `Drop` never runs, so a watchdog shell (in its own session, out of reach of
//! the terminal's Ctrl-C) waits for this process to end, however it ends, then stops the
//! server and removes the folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

const PASSWORD: &str = "basin-suite";

pub struct Server {
    port: u16,
}

impl Server {
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();

/// The suite's server, started on first use; `None` when this machine has no Postgres
/// server binaries and the full suite was not asked for (`BASIN_FULL_SUITE`).
pub async fn server() -> Option<&'static Server> {
    tokio::task::spawn_blocking(|| SERVER.get_or_init(start).as_ref())
        .await
        .expect("starting Postgres panicked")
}

/// The URL of a new, empty database on the suite's server.
pub async fn fresh_database() -> Option<String> {
    let server = server().await?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&server.url("postgres"))
        .await
        .expect("connect to the suite's Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a database");
    admin.close().await.expect("disconnect");
    Some(server.url(&name))
}

/// The newest `/usr/lib/postgresql/N/bin`, else `pg_config --bindir`, if it has `initdb`.
fn bindir() -> Option<PathBuf> {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, dir)| dir.join("bin/initdb").exists())
        .max_by_key(|(version, _)| *version)
        .map(|(_, dir)| dir.join("bin"));
    newest.or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        dir.join("initdb").exists().then_some(dir)
    })
}

fn start() -> Option<Server> {
    let Some(bin) = bindir() else {
        let message =
            "no Postgres server binaries (apt-get install postgresql; scripts/env.sh does)";
        // scripts/test.sh installs them first: missing there is a failure, not a skip.
        if std::env::var_os("BASIN_FULL_SUITE").is_some() {
            panic!("{message}");
        }
        // Straight to stderr: the test harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "skipping the catalog suite's Postgres half: {message}"
        );
        return None;
    };
    let folder = tempfile::Builder::new()
        .prefix("basin-catalog-pg-")
        .tempdir()
        .expect("temporary folder")
        .keep();
    std::fs::write(folder.join("pw"), format!("{PASSWORD}\n")).expect("password file");
    // initdb refuses to run as root: the cluster then belongs to `nobody`.
    let as_user: &[&str] = if output(Command::new("id").arg("-u")) == "0" {
        output(Command::new("chown").args(["-R", "nobody"]).arg(&folder));
        &["runuser", "-u", "nobody", "--"]
    } else {
        &[]
    };
    let data = folder.join("data");
    output(
        command(as_user, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", folder.join("pw").display())),
    );
    watch(as_user, &bin, &folder);
    // The free port can be taken between finding it and binding it: try a few.
    for _ in 0..5 {
        let port = free_port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            folder.display()
        );
        let started = command(as_user, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(folder.join("log"))
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        if started.success() {
            return Some(Server { port });
        }
    }
    let log = std::fs::read_to_string(folder.join("log")).unwrap_or_default();
    panic!("Postgres did not start:\n{log}");
}

/// Stops the server and removes `folder` once this process is gone.
fn watch(as_user: &[&str], bin: &Path, folder: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
         {user} '{pg_ctl}' -D '{data}' -m immediate stop; rm -rf '{folder}'",
        pid = std::process::id(),
        user = as_user.join(" "),
        pg_ctl = bin.join("pg_ctl").display(),
        data = folder.join("data").display(),
        folder = folder.display(),
    );
    // `--fork`: setsid returns at once, and the watchdog, orphaned, outlives this process.
    let started = Command::new("setsid")
        .args(["--fork", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the watchdog");
    assert!(started.success(), "setsid failed: {started}");
}

fn command(as_user: &[&str], program: &Path) -> Command {
    match as_user.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs `command`, panicking with its stderr if it fails; returns its stdout, trimmed.
fn output(command: &mut Command) -> String {
    let out = command.output().expect("run a command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}
