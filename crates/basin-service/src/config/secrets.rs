//! `[secrets]` in basin.toml: the only values a function can ask for as secrets.
//!
//! A function declares the names it needs (`@basin.python(secrets=["API_KEY"])`, a
//! project's `secrets = [...]`); each must be declared here by whoever runs Basin, with where
//! its value comes from:
//!
//! ```toml
//! [secrets]
//! API_KEY = { env = "STRIPE_API_KEY" }     # an environment variable of the process running Basin
//! DB_PASSWORD = { file = "/run/secrets/db" } # a file's content (without its last newline)
//! GREETING = "hello"                         # the value itself (keep basin.toml private then)
//! ```
//!
//! Before this, a function could name any environment variable of the server, Basin's own
//! storage keys included: a writer who deployed `secrets=["BASIN_S3_SECRET_ACCESS_KEY"]` read
//! the key. Now a name not declared is refused, and no declaration may name a variable Basin
//! reads for itself (`BASIN_*`, libpq's `PG*`, a source's `password_env`) or use a name
//! Basin gives functions itself (`BASIN_*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// A secret as written under `[secrets]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretSection {
    Value(String),
    From(SecretFrom),
}

/// `{ env = "VAR" }` or `{ file = "path" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFrom {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// Where a declared secret's value comes from; read when a function needs it, so a changed
/// variable or file is seen without a restart.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    Env(String),
    File(PathBuf),
}

// Never the value in a log or a debug print.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Value(..)"),
            Secret::Env(var) => write!(f, "Env({var})"),
            Secret::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// Whether Basin reads the environment variable `name` for itself: its own settings, and
/// libpq's (a Postgres catalog's password comes from `PGPASSWORD` or `PGPASSFILE`).
fn basins_own(name: &str) -> bool {
    name.starts_with("BASIN_") || name.starts_with("PG")
}

/// `[secrets]`, checked; `passwords` are the variables sources read their passwords from,
/// which are Basin's too; file paths are relative to `dir`.
pub(super) fn resolve(
    written: &BTreeMap<String, SecretSection>,
    passwords: &[String],
    dir: &Path,
) -> Result<BTreeMap<String, Secret>> {
    let mut secrets = BTreeMap::new();
    for (name, section) in written {
        let at = format!("basin.toml: [secrets] {name}");
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::invalid(format!(
                "{at}: a secret's name is what functions read it as, an environment variable's \
                 name"
            ))
            .with_hint("use letters, digits and _ (not first), e.g. API_KEY"));
        }
        if name.starts_with("BASIN_") {
            return Err(Error::invalid(format!(
                "{at}: names starting with BASIN_ are Basin's own (functions get BASIN_FUNCTION)"
            ))
            .with_hint("name the secret something else, e.g. without the BASIN_ prefix"));
        }
        let secret = match section {
            SecretSection::Value(value) => Secret::Value(value.clone()),
            SecretSection::From(SecretFrom {
                env: Some(var),
                file: None,
            }) => {
                if basins_own(var) || passwords.contains(var) {
                    return Err(Error::invalid(format!(
                        "{at}: ${var} is one of Basin's own settings, never a function's secret"
                    ))
                    .with_hint(
                        "give the function a credential of its own, in a variable of its own",
                    ));
                }
                Secret::Env(var.clone())
            }
            SecretSection::From(SecretFrom {
                env: None,
                file: Some(path),
            }) => Secret::File(dir.join(path)),
            SecretSection::From(_) => {
                return Err(Error::invalid(format!(
                    "{at}: say where its value comes from, with one of `env` and `file`"
                ))
                .with_hint(format!(
                    "{name} = {{ env = \"{name}\" }}, {name} = {{ file = \"secrets/{}\" }}, or \
                     {name} = \"the value\"",
                    name.to_ascii_lowercase()
                )));
            }
        };
        secrets.insert(name.clone(), secret);
    }
    Ok(secrets)
}

impl Secret {
    /// The value now; `function` and `name` say whose secret is missing.
    pub(crate) fn read(&self, function: &str, name: &str) -> Result<String> {
        match self {
            Secret::Value(value) => Ok(value.clone()),
            Secret::Env(var) => super::env::secret(var).ok_or_else(|| {
                Error::invalid(format!(
                    "function `{function}` needs the secret `{name}`, and ${var}, where \
                     basin.toml's [secrets] says it comes from, is not set"
                ))
                .with_hint(format!("export {var}=... in the shell that runs basin"))
            }),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|text| text.strip_suffix('\n').unwrap_or(&text).to_string())
                .map_err(|e| {
                    Error::invalid(format!(
                        "function `{function}` needs the secret `{name}`, and {}, where \
                         basin.toml's [secrets] says it comes from, cannot be read: {e}",
                        path.display()
                    ))
                    .with_hint("check the file's path and that the user running basin may read it")
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(toml_text: &str) -> Result<BTreeMap<String, Secret>> {
        #[derive(Deserialize)]
        struct File {
            secrets: BTreeMap<String, SecretSection>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        resolve(
            &file.secrets,
            &["SHOP_PASSWORD".to_string()],
            Path::new("/lake"),
        )
    }

    #[test]
    fn secrets_come_from_a_value_a_variable_or_a_file() {
        let secrets =
            from("[secrets]\nA = \"x\"\nB = { env = \"STRIPE_KEY\" }\nC = { file = \"s/c.txt\" }")
                .unwrap();
        assert_eq!(secrets["A"], Secret::Value("x".into()));
        assert_eq!(secrets["B"], Secret::Env("STRIPE_KEY".into()));
        assert_eq!(secrets["C"], Secret::File("/lake/s/c.txt".into()));
        assert_eq!(format!("{:?}", secrets["A"]), "Value(..)");
    }

    #[test]
    fn basins_own_variables_can_never_be_named() {
        for own in [
            "BASIN_S3_SECRET_ACCESS_KEY",
            "BASIN_S3_ACCESS_KEY_ID",
            "PGPASSWORD",
            "SHOP_PASSWORD",
        ] {
            let e = from(&format!("[secrets]\nK = {{ env = \"{own}\" }}")).unwrap_err();
            assert_eq!(e.kind(), basin_core::ErrorKind::InvalidInput, "{own}");
            assert!(e.message.contains(own), "{}", e.message);
        }
        for bad in [
            "BASIN_FUNCTION = \"x\"",
            "\"1A\" = \"x\"",
            "\"A-B\" = \"x\"",
            "A = {}",
        ] {
            assert!(from(&format!("[secrets]\n{bad}")).is_err(), "{bad}");
        }
    }
}
