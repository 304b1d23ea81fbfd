//! Grants: what a principal may read and write, by namespace/table pattern and branch
//! pattern. The catalog applies them to the acting principal ([`crate::actor`]) at every
//! read and commit ([`crate::access`]), so each door (HTTP API, Iceberg REST, Postgres, the
//! console) shows and changes only what the grants allow, by the same rule:
//!
//! - a key (`sales`, `sales.orders`) a principal may not read is absent: listings leave it
//!   out, a lookup answers "does not exist";
//! - a commit touching a key it may not write is refused (`Forbidden`), naming the key;
//! - `write` implies `read`; `admin` allows everything.
//!
//! Patterns use `*` for any run of characters ([`crate::protection::matches`]): `sales.*`,
//! `*`, `sales.orders`; branches `main`, `dev/*`, `*`.

use basin_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::protection::matches;

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// One grant: `access` on the keys matching `objects`, on the branches matching `branches`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub access: Access,
    pub objects: Vec<String>,
    pub branches: Vec<String>,
}

impl Grant {
    /// `access:OBJECTS[@BRANCHES]`, each list comma-separated: `read:sales.*`,
    /// `write:sandbox.*,tmp.*@dev/*`, `admin`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!("`{text}` is not a grant: {why}")).with_hint(
                "write ACCESS:TABLES[@BRANCHES], e.g. read:sales.* or write:sandbox.*@dev/* (or admin)",
            )
        };
        let (access, rest) = text.split_once(':').unwrap_or((text, ""));
        let access = match access.trim() {
            "read" => Access::Read,
            "write" => Access::Write,
            "admin" => Access::Admin,
            other => return Err(bad(&format!("`{other}` is not read, write or admin"))),
        };
        if access == Access::Admin {
            return Ok(Self::admin());
        }
        let (objects, branches) = rest.split_once('@').unwrap_or((rest, "*"));
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (objects, branches) = (list(objects), list(branches));
        if objects.is_empty() {
            return Err(bad("it names no tables"));
        }
        if branches.is_empty() {
            return Err(bad("it names no branches after `@`"));
        }
        Ok(Self {
            access,
            objects,
            branches,
        })
    }

    pub fn admin() -> Self {
        Self {
            access: Access::Admin,
            objects: vec!["*".into()],
            branches: vec!["*".into()],
        }
    }

    /// Everything, to read (`access` Read) or to change (Write).
    pub fn everything(access: Access) -> Self {
        Self {
            access,
            objects: vec!["*".into()],
            branches: vec!["*".into()],
        }
    }

    fn on_branch(&self, branch: &str) -> bool {
        self.branches.iter().any(|p| matches(p, branch))
    }

    /// Whether the grant reaches into namespace `ns`: some key it matches lies in it.
    fn reaches_namespace(&self, ns: &str) -> bool {
        let inside = format!("{ns}.");
        self.objects.iter().any(|p| {
            let literal = p.split('*').next().unwrap_or_default();
            matches(p, ns) || literal.starts_with(&inside) || inside.starts_with(literal)
        })
    }

    /// Whether the grant covers all of namespace `ns` (creating or dropping it).
    fn covers_namespace(&self, ns: &str) -> bool {
        self.objects
            .iter()
            .any(|p| matches(p, ns) || matches(p, &format!("{ns}.*")))
    }

    fn covers(&self, key: &str) -> bool {
        self.objects.iter().any(|p| matches(p, key))
    }

    /// `access:objects@branches`, as `basin token ls` shows it.
    pub fn display(&self) -> String {
        if self.access == Access::Admin {
            return "admin".into();
        }
        let branches = if self.branches == ["*"] {
            String::new()
        } else {
            format!("@{}", self.branches.join(","))
        };
        format!(
            "{}:{}{branches}",
            self.access.as_str(),
            self.objects.join(",")
        )
    }
}

/// Everything a principal holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub grants: Vec<Grant>,
}

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Self {
        Self { grants }
    }

    pub fn is_admin(&self) -> bool {
        self.grants.iter().any(|g| g.access == Access::Admin)
    }

    /// Whether `key` (a namespace or `ns.table`) may be read on `branch` (a branch, or the
    /// tag a read names; `""` for a bare commit).
    pub fn may_read(&self, key: &str, is_namespace: bool, branch: &str) -> bool {
        self.grants.iter().any(|g| {
            g.access >= Access::Read
                && (g.access == Access::Admin || g.on_branch(branch))
                && if is_namespace {
                    g.reaches_namespace(key)
                } else {
                    g.covers(key)
                }
        })
    }

    /// Whether a commit on `branch` may put or delete `key`.
    pub fn may_write(&self, key: &str, is_namespace: bool, branch: &str) -> bool {
        self.grants.iter().any(|g| {
            g.access == Access::Admin
                || (g.access == Access::Write
                    && g.on_branch(branch)
                    && if is_namespace {
                        g.covers_namespace(key)
                    } else {
                        g.covers(key)
                    })
        })
    }

    /// Whether any grant reaches `branch` (a principal sees only such branches and tags).
    pub fn may_see_ref(&self, name: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.access == Access::Admin || g.on_branch(name))
    }

    /// Whether any write grant reaches `branch` (creating or deleting it).
    pub fn may_write_branch(&self, branch: &str) -> bool {
        self.grants.iter().any(|g| {
            g.access == Access::Admin || (g.access == Access::Write && g.on_branch(branch))
        })
    }

    /// Whether the files of table `key` may be read (`Read`) or written (`Write`): a grant
    /// of that access on the table, on any branch, since a file carries no branch. `None`:
    /// a file of no known table, which only a grant on every table (`*`) reaches.
    pub fn may_touch_files(&self, key: Option<&str>, access: Access) -> bool {
        self.grants.iter().any(|g| {
            g.access == Access::Admin
                || (g.access >= access
                    && match key {
                        Some(key) => g.covers(key),
                        None => g.objects.iter().any(|p| p == "*"),
                    })
        })
    }

    /// The highest access held, for a door's coarse per-route check.
    pub fn highest(&self) -> Option<Access> {
        self.grants.iter().map(|g| g.access).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basin_core::ErrorKind;

    fn grants(list: &[&str]) -> Grants {
        Grants::new(list.iter().map(|g| Grant::parse(g).unwrap()).collect())
    }

    #[test]
    fn grants_parse_as_written() {
        let g = Grant::parse("write:sandbox.*,tmp.*@dev/*").unwrap();
        assert_eq!(g.access, Access::Write);
        assert_eq!(g.objects, ["sandbox.*", "tmp.*"]);
        assert_eq!(g.branches, ["dev/*"]);
        assert_eq!(g.display(), "write:sandbox.*,tmp.*@dev/*");
        assert_eq!(Grant::parse("read:sales.*").unwrap().branches, ["*"]);
        assert!(Grant::parse("admin").unwrap().access == Access::Admin);
        for bad in ["delete:x", "read:", "read:x@", "sales.*"] {
            let e = Grant::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn files_follow_their_table_on_any_branch() {
        let g = grants(&["read:sales.*@main", "write:sandbox.*@dev/*"]);
        assert!(g.may_touch_files(Some("sales.orders"), Access::Read));
        assert!(!g.may_touch_files(Some("sales.orders"), Access::Write));
        assert!(g.may_touch_files(Some("sandbox.t"), Access::Write));
        assert!(!g.may_touch_files(Some("hr.pay"), Access::Read));
        // A file of no known table: only a grant on every table reaches it.
        assert!(!g.may_touch_files(None, Access::Read));
        assert!(grants(&["read:*@dev"]).may_touch_files(None, Access::Read));
        assert!(!grants(&["read:*"]).may_touch_files(None, Access::Write));
        assert!(grants(&["admin"]).may_touch_files(None, Access::Write));
    }

    #[test]
    fn reads_and_writes_follow_tables_and_branches() {
        let g = grants(&["read:sales.*", "write:sandbox.*@dev/*"]);
        assert!(g.may_read("sales.orders", false, "main"));
        assert!(g.may_read("sales", true, "main"));
        assert!(!g.may_read("hr.salaries", false, "main"));
        assert!(!g.may_read("hr", true, "main"));
        assert!(
            g.may_read("sandbox.x", false, "dev/a"),
            "write implies read"
        );
        assert!(!g.may_read("sandbox.x", false, "main"));
        assert!(g.may_write("sandbox.x", false, "dev/a"));
        assert!(g.may_write("sandbox", true, "dev/a"));
        assert!(!g.may_write("sandbox.x", false, "main"));
        assert!(!g.may_write("sales.orders", false, "dev/a"));
        assert!(g.may_write_branch("dev/new") && !g.may_write_branch("main"));
        let one = grants(&["write:sales.orders"]);
        assert!(one.may_read("sales", true, "main"), "its namespace shows");
        assert!(
            !one.may_write("sales", true, "main"),
            "but it cannot drop it"
        );
        assert!(grants(&["admin"]).may_write("anything", true, "main"));
    }
}
