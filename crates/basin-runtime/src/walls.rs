//! The walls around a function, as this machine can build them: probed once from Basin (the
//! child builds them itself, in python/basin/_sandbox.py, under the same names), printed at
//! start by `basin serve`, `run` and `invoke`, listed by `basin doctor`, and enforced when
//! isolation is strict: a function is not run at all when one of them is missing.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use basin_core::{Error, Result};

use crate::cgroup::Cgroups;

/// What Basin does when a wall cannot be built (`[functions] isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Refuse to run a function while any wall is missing.
    Strict,
    /// Run with the walls this machine has, and say which are missing.
    BestEffort,
}

impl Isolation {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "strict" => Ok(Self::Strict),
            "best-effort" => Ok(Self::BestEffort),
            other => Err(Error::invalid(format!(
                "[functions] isolation = \"{other}\" is not a mode"
            ))
            .with_hint("write \"strict\" (refuse when a wall is missing) or \"best-effort\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::BestEffort => "best-effort",
        }
    }
}

/// The names `[functions] disable_walls` accepts.
pub const WALL_NAMES: [&str; 8] = [
    "processes",
    "network",
    "internet",
    "files",
    "sockets",
    "signals",
    "limits",
    "memory",
];

/// One wall: what it keeps a function from, and how this machine builds it (or why not).
#[derive(Clone, Debug)]
pub struct Wall {
    pub name: &'static str,
    pub guards: &'static str,
    /// The mechanism in force, or why there is none.
    pub state: std::result::Result<String, String>,
}

/// The walls as probed, and the isolation mode they lead to.
#[derive(Clone, Debug)]
pub struct Walls {
    pub walls: Vec<Wall>,
    pub isolation: Isolation,
    /// Whether the mode was set (`[functions] isolation`) or chosen from the probe.
    pub chosen: bool,
    /// Basin runs as root: functions keep root's ownership of files inside their walls.
    pub root: bool,
    /// Where invocations' memory groups are made (the `memory` wall), when it holds.
    pub(crate) cgroups: Option<Cgroups>,
    /// How the functions' CPU share is held below Basin's (`share_cpu`), or why it is not.
    pub cpu: Result<String, String>,
}

impl Walls {
    /// Probes this kernel. `mode`: `[functions] isolation` (None: strict when every wall can
    /// be built); `off`: walls turned off by `[functions] disable_walls`.
    pub fn probe(mode: Option<Isolation>, off: &[String]) -> Self {
        let (walls, cgroups) = probe_walls(off);
        // Chosen from the probe: strict when every wall but `memory` and `internet` holds.
        // Without `memory`, the memory limit is still enforced, by sampling (see `summary`);
        // `internet` is asked for by the functions that want the internet only (`check`). A
        // strict mode that was set asks for both.
        let complete = walls
            .iter()
            .all(|w| w.state.is_ok() || w.name == "memory" || w.name == "internet");
        let isolation = mode.unwrap_or(if complete {
            Isolation::Strict
        } else {
            Isolation::BestEffort
        });
        Self {
            walls,
            isolation,
            chosen: mode.is_some(),
            root: rustix::process::geteuid().is_root(),
            cgroups,
            cpu: Err("not set up".to_string()),
        }
    }

    /// Holds every function's CPU, together, to the share of one task `nice` steps below
    /// Basin (`[functions] nice`) with the memory wall's cgroups; without them each function
    /// process runs at that nice value only (python/basin/_worker.py), which holds against
    /// Basin only where the kernel does not weigh sessions against each other.
    /// Without `apply`, only whether it could (`basin doctor`).
    pub fn share_cpu(&mut self, nice: u8, apply: bool) {
        self.cpu = match &mut self.cgroups {
            // With nice 0 a share set by an earlier Basin is put back.
            Some(cgroups) => cgroups.share_cpu(nice, apply).and_then(|how| match nice {
                0 => Err("[functions] nice is 0".to_string()),
                _ => Ok(how),
            }),
            None => Err("needs the `memory` wall's cgroups".to_string()),
        };
    }

    /// Whether the wall `name` is in force.
    pub fn holds(&self, name: &str) -> bool {
        self.walls.iter().any(|w| w.name == name && w.state.is_ok())
    }

    pub fn missing(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.walls
            .iter()
            .filter_map(|w| w.state.as_ref().err().map(|e| (w.name, e.as_str())))
    }

    /// The missing walls a strict runtime refuses to run without: all of them when strict
    /// was set, all but `memory` when it was chosen from the probe; `internet` only for a
    /// function with the internet (whatever the mode: it is that function's only network wall).
    fn required_missing(&self, internet: bool) -> impl Iterator<Item = (&'static str, &str)> {
        self.missing().filter(move |(w, _)| match *w {
            "memory" => self.chosen,
            "internet" => internet,
            _ => true,
        })
    }

    /// Whether a function (with the `internet` or without) may run: an error naming the
    /// missing walls when isolation is strict.
    pub fn check(&self, function: &str, internet: bool) -> Result<()> {
        if self.isolation == Isolation::BestEffort {
            return Ok(());
        }
        refuse(
            function,
            self.required_missing(internet)
                .map(|(w, why)| format!("{w}: {why}"))
                .collect(),
        )
    }

    /// One line for the start of `basin serve`, `run` and `invoke` (stderr).
    pub fn summary(&self) -> String {
        let line = self.line_without_note();
        if self.root {
            format!("{line}; note: Basin runs as root, see `basin doctor`")
        } else {
            line
        }
    }

    /// The summary without the note about root.
    pub fn line_without_note(&self) -> String {
        let missing: Vec<String> = self
            .missing()
            .map(|(w, why)| format!("{w} ({why})"))
            .collect();
        let held: Vec<&str> = self
            .walls
            .iter()
            .filter(|w| w.state.is_ok())
            .map(|w| w.name)
            .collect();
        let required = self.required_missing(false).next().is_none();
        match (self.isolation, missing.is_empty()) {
            (_, true) => format!(
                "functions run confined ({}): {}",
                self.isolation.as_str(),
                held.join(", ")
            ),
            (Isolation::Strict, false) if required => {
                let mut consequences = Vec::new();
                if !self.holds("memory") {
                    consequences.push(
                        "memory limits are counted by sampling /proc only, which misses a \
                         memfd and unlinked files",
                    );
                }
                if !self.holds("internet") {
                    consequences.push("functions with internet=True are not run");
                }
                format!(
                    "functions run confined (strict): {}; missing {}: {}; see `basin doctor`",
                    held.join(", "),
                    missing.join("; "),
                    consequences.join("; ")
                )
            }
            (Isolation::Strict, false) => format!(
                "functions will not run: isolation is strict and these walls are missing: {}; \
                 see `basin doctor`",
                missing.join("; ")
            ),
            (Isolation::BestEffort, false) => format!(
                "warning: functions run with fewer walls (isolation best-effort): missing {}; \
                 set [functions] isolation = \"strict\" to refuse instead, see `basin doctor`",
                missing.join("; ")
            ),
        }
    }
}

/// The refusal of a strict runtime, naming each missing wall and the setting.
pub(crate) fn refuse(function: &str, missing: Vec<String>) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "function `{function}` was not run: isolation is strict and these walls are missing: {}",
        missing.join("; ")
    ))
    .with_hint(
        "run Basin where user namespaces and Landlock are allowed (see `basin doctor`), or set \
         [functions] isolation = \"best-effort\" in basin.toml to run with fewer walls",
    ))
}

/// slirp4netns where it is installed (python/basin/_internet.py looks in the same folders),
/// with a libslirp of 4.3 or later (older ones forward any port of their DNS address to the
/// host's resolver, often on its loopback); or why not.
fn slirp4netns() -> std::result::Result<std::path::PathBuf, String> {
    let path = ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join("slirp4netns"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "slirp4netns is not installed (apt install slirp4netns): such a function would \
             share the host's network, its loopback and Basin's own ports included"
                .to_string()
        })?;
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} --version: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version: Option<(u32, u32)> = text
        .lines()
        .find_map(|l| l.strip_prefix("libslirp:"))
        .and_then(|v| {
            let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        });
    match version {
        Some(v) if v >= (4, 3) => Ok(path),
        Some((major, minor)) => Err(format!(
            "{}'s libslirp is {major}.{minor}; 4.3 or later is needed (older ones forward any \
             port of the DNS address to the host's resolver)",
            path.display()
        )),
        None => Err(format!(
            "{} --version names no libslirp version",
            path.display()
        )),
    }
}

/// Each wall as this kernel builds it, or why it cannot, those in `off` turned off; and
/// where invocations' memory groups are made, when the `memory` wall holds.
fn probe_walls(off: &[String]) -> (Vec<Wall>, Option<Cgroups>) {
    let landlock = landlock_abi();
    // The PID namespace with the IPC namespace each invocation also gets.
    let pid_ns = namespaces(libc::CLONE_NEWPID | libc::CLONE_NEWIPC, false);
    let net_ns = namespaces(libc::CLONE_NEWNET, false);
    let mount_ns = namespaces(libc::CLONE_NEWNS, true);
    // The group's files are the function's user's: only Landlock (the `files` wall)
    // keeps it from raising its own limit, or leaving its group. Not probed when it will
    // not be used: probing makes folders, and may move Basin into one.
    let files = landlock >= 1 && !off.iter().any(|o| o == "files");
    let cgroups = if off.iter().any(|o| o == "memory") {
        Err("turned off by [functions] disable_walls".to_string())
    } else if !files {
        Err("needs the `files` wall (without it a function could raise its own limit)".into())
    } else {
        Cgroups::probe()
    };
    let network = match (&net_ns, landlock_rules(landlock, 4, "TCP rules")) {
        (Ok(()), _) => Ok("network namespace".to_string()),
        (Err(_), Ok(abi)) => Ok(format!("{abi} TCP rules (UDP is not covered)")),
        (Err(e), Err(_)) => Err(e.clone()),
    };
    let signals = match (&pid_ns, landlock_rules(landlock, 6, "scoping")) {
        (Ok(()), Ok(abi)) => Ok(format!("PID namespace, {abi} scoping")),
        (Ok(()), Err(_)) => Ok("PID namespace".to_string()),
        (Err(_), Ok(abi)) => Ok(format!("{abi} scoping")),
        (Err(e), Err(_)) => Err(e.clone()),
    };
    let internet = internet_wall(&pid_ns, &net_ns, files);
    // rlimits, and the processes counted from outside (rlimits do not bind root).
    let limits: std::result::Result<String, String> =
        Ok("rlimits, and processes counted from outside".to_string());
    let mut walls = vec![
        Wall {
            name: "processes",
            guards: "all its processes end with it; no host privileges, no shared IPC",
            state: pid_ns.map(|()| "user, PID and IPC namespaces".to_string()),
        },
        Wall {
            name: "network",
            guards: "no network unless it asks for internet=True",
            state: network,
        },
        Wall {
            name: "internet",
            guards: "with internet=True: out, but not to the host's loopback, its own \
                     addresses or link-local ones (cloud metadata)",
            state: internet,
        },
        Wall {
            name: "files",
            guards: "opens only its environment, libraries, own folder",
            state: landlock_rules(landlock, 1, "file rules"),
        },
        Wall {
            name: "sockets",
            guards: "no service sockets in /run or /tmp",
            state: mount_ns.map(|()| "mount namespace".to_string()),
        },
        Wall {
            name: "signals",
            guards: "no signals to Basin or other functions",
            state: signals,
        },
        Wall {
            name: "limits",
            guards: "bounded processes, open files, file sizes",
            state: limits,
        },
        Wall {
            name: "memory",
            guards: "all its memory counted by the kernel, memfd and files in memory too",
            state: cgroups
                .as_ref()
                .map(Cgroups::describe)
                .map_err(Clone::clone),
        },
    ];
    for wall in &mut walls {
        if off.iter().any(|o| o == wall.name) {
            wall.state = Err("turned off by [functions] disable_walls".to_string());
        }
    }
    (walls, cgroups.ok())
}

/// Landlock rules of ABI `min` or later (`what` they are, for the reason they are missing),
/// with this kernel's ABI `landlock` (0: none).
fn landlock_rules(landlock: i64, min: i64, what: &str) -> std::result::Result<String, String> {
    if landlock >= min {
        Ok(format!("Landlock ABI {landlock}"))
    } else if landlock > 0 {
        Err(format!(
            "{what} needs Landlock ABI {min}; this kernel has {landlock}"
        ))
    } else {
        Err("Landlock is not enabled in this kernel".to_string())
    }
}

/// The `internet` wall: a network namespace of the function's own, served by slirp4netns,
/// which needs the `processes` wall's user namespace and the `files` wall.
fn internet_wall(
    pid_ns: &std::result::Result<(), String>,
    net_ns: &std::result::Result<(), String>,
    files: bool,
) -> std::result::Result<String, String> {
    match (pid_ns, net_ns, files) {
        (Err(_), _, _) => Err("needs the `processes` wall's user namespace".to_string()),
        (_, Err(e), _) => Err(e.clone()),
        (_, _, false) => Err(
            "needs Landlock (the `files` wall), which keeps the worker's code from \
             slirp4netns"
                .to_string(),
        ),
        _ => slirp4netns().map(|slirp| {
            format!(
                "a network namespace of its own, served by {}",
                slirp.display()
            )
        }),
    }
}

/// The kernel's Landlock ABI version, 0 without Landlock.
fn landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only reads
    // its arguments and returns a number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    abi.max(0)
}

/// Whether a child can enter a new user namespace plus `flag`'s namespace (and, with
/// `mount`, cover /tmp with a private tmpfs there), as the function's child does.
fn namespaces(flag: libc::c_int, mount: bool) -> std::result::Result<(), String> {
    let mut command = Command::new("/bin/true");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the closure makes raw system calls only (no allocation,
    // no locks), then ends the child without exec'ing: its exit status is the answer.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER | flag) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if mount {
                let none = std::ptr::null::<libc::c_char>();
                if libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                    || libc::mount(
                        c"tmpfs".as_ptr(),
                        c"/tmp".as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"size=1m".as_ptr().cast(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::_exit(0)
        });
    }
    let what = if flag & libc::CLONE_NEWPID != 0 {
        "no PID or IPC namespace"
    } else if flag == libc::CLONE_NEWNET {
        "no network namespace"
    } else {
        "no mount namespace"
    };
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} (the probe ended with {status})")),
        Err(e) => Err(format!("{what} ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_turned_off_is_missing_and_makes_strict_refuse() {
        let walls = Walls::probe(Some(Isolation::Strict), &["network".to_string()]);
        let missing: Vec<_> = walls.missing().map(|(w, _)| w).collect();
        assert!(missing.contains(&"network"), "{missing:?}");
        let e = walls.check("f.py:f", false).unwrap_err();
        assert!(
            e.message
                .contains("network: turned off by [functions] disable_walls"),
            "{e}"
        );
        assert!(walls.summary().starts_with("functions will not run"));
        let relaxed = Walls::probe(Some(Isolation::BestEffort), &["network".to_string()]);
        assert!(relaxed.check("f.py:f", false).is_ok());
        assert!(relaxed.summary().starts_with("warning:"));
    }

    #[test]
    fn without_the_memory_wall_the_probe_stays_strict_but_a_set_strict_refuses() {
        let off = ["memory".to_string()];
        let chosen = Walls::probe(None, &off);
        assert_eq!(chosen.isolation, Isolation::Strict);
        assert!(chosen.check("f.py:f", false).is_ok());
        let line = chosen.summary();
        assert!(
            line.starts_with("functions run confined (strict)")
                && line.contains("missing memory (turned off")
                && line.contains("sampling /proc only"),
            "{line}"
        );
        let set = Walls::probe(Some(Isolation::Strict), &off);
        let e = set.check("f.py:f", false).unwrap_err();
        assert!(e.message.contains("memory: turned off"), "{e}");
        // Without Landlock's rules the group's files are the function's to rewrite.
        let no_files = Walls::probe(Some(Isolation::BestEffort), &["files".to_string()]);
        let why: Vec<_> = no_files.missing().collect();
        assert!(
            why.contains(&(
                "memory",
                "needs the `files` wall (without it a function could raise its own limit)"
            )),
            "{why:?}"
        );
        assert!(no_files.cgroups.is_none());
    }

    #[test]
    fn modes_parse_and_unknown_ones_are_refused() {
        assert_eq!(Isolation::parse("strict").unwrap(), Isolation::Strict);
        assert_eq!(
            Isolation::parse("best-effort").unwrap(),
            Isolation::BestEffort
        );
        assert!(Isolation::parse("lax").unwrap_err().message.contains("lax"));
    }
}
