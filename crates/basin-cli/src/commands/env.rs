use std::path::Path;
use std::time::Duration;

use basin_runtime::EnvSpec;

use crate::lake::open_local;
use crate::output::{FormatArg, done, print, status, time};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Environments are keyed by a hash of their spec and built once with uv, then reused
by every function that declares the same Python version and pins, in every lakehouse of this
user: they live in ~/.cache/basin/envs (or $XDG_CACHE_HOME/basin/envs, or $BASIN_CACHE_DIR/envs),
so `rm` and `prune` act on all of them."
)]
pub enum Command {
    /// List the cached function environments
    Ls {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Build (or find) the environment for a Python version and pinned packages
    Build {
        /// The Python version, e.g. 3.11
        #[arg(long, default_value = "3.11")]
        python: String,
        /// A pinned package, NAME==VERSION (repeat for more)
        #[arg(long = "pip", value_name = "NAME==VERSION")]
        packages: Vec<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Remove the environments whose hash starts with PREFIX
    Rm { prefix: String },
    /// Remove environments unused for a number of days (and leftovers of interrupted builds)
    Prune {
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        unused_days: u64,
    },
}

pub async fn run(cmd: Command, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let envs = lakehouse.envs();
    match cmd {
        Command::Ls { format } => {
            let listed = envs.list()?;
            let rows = listed
                .iter()
                .map(|e| {
                    let pins: Vec<String> = e
                        .spec
                        .packages
                        .iter()
                        .map(|(n, v)| format!("{n}=={v}"))
                        .collect();
                    vec![
                        e.hash.clone(),
                        e.spec.python.clone(),
                        pins.join(" "),
                        format!("{:.1} MB", e.bytes as f64 / 1e6),
                        time(e.last_used_ms),
                    ]
                })
                .collect();
            print(
                format.format,
                &listed,
                &["env", "python", "packages", "size", "last used"],
                rows,
            )
        }
        Command::Build {
            python,
            packages,
            format,
        } => {
            let mut spec = EnvSpec::new(python);
            for package in &packages {
                let (name, version) = parse_pin(package)?;
                spec = spec.with_package(name, version);
            }
            status(format!("resolving environment {} ...", spec.hash()));
            let env = envs.resolve(&spec).await?;
            let report =
                serde_json::json!({"env": env.hash, "python": env.python, "built": env.built});
            done(format.format, &report, || {
                let how = if env.built { "Built" } else { "Found cached" };
                format!("{how} environment {} ({})", env.hash, env.python.display())
            })
        }
        Command::Rm { prefix } => {
            for hash in envs.remove(&prefix)? {
                status(format!("Removed environment {hash}"));
            }
            Ok(())
        }
        Command::Prune { unused_days } => {
            let removed = envs.prune(Duration::from_secs(unused_days * 86_400))?;
            status(format!(
                "Removed {} environment(s) unused for {unused_days} days",
                removed.len()
            ));
            Ok(())
        }
    }
}

/// `NAME==VERSION`, as `--pip` takes it.
pub(crate) fn parse_pin(package: &str) -> Result<(String, String), basin_core::Error> {
    let (name, version) = package.split_once("==").ok_or_else(|| {
        basin_core::Error::invalid(format!("`{package}` is not pinned"))
            .with_hint("write packages as NAME==VERSION, e.g. --pip pandas==2.2.3")
    })?;
    Ok((name.trim().to_string(), version.trim().to_string()))
}
