//! The `memory` wall: a memory cgroup per invocation. The kernel then counts everything the
//! invocation's processes charge (anonymous and shared memory, a `memfd`, files in memory
//! whether unlinked or not, page cache, kernel memory) and stops it at its limit, which
//! Basin's own sampling of `/proc` cannot do for memory no process maps.
//!
//! Written by hand: it is a handful of files in cgroupfs (make a folder, write a limit, write
//! a process id, read a counter), for both cgroup v2 (`memory.max`) and v1
//! (`memory.limit_in_bytes`, still the memory hierarchy on hybrid hosts), where the crates
//! that manage cgroups bring a container runtime's model of them.
//!
//! Groups live in a folder `basin` under the cgroup Basin was started in; each is named
//! after the Basin process, its runtime and a number, so a Basin that starts later removes
//! what one that was killed left behind. A spare child is moved into its group while it
//! waits for its request (see `Group::enter`).
//!
//! The same groups hold the functions' CPU share below Basin's (`[functions] nice`,
//! `Cgroups::share_cpu`): under v2 the folder `basin` weighs less than Basin's own group;
//! under v1 the cpu hierarchy is another tree, where every child also enters a group `basin`
//! with fewer shares. A process's own nice value is not enough: each invocation is a session
//! of its own, and where Basin's CPU group is the root the kernel weighs sessions, not
//! processes, against each other (autogroup).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Where this process may make memory groups, as probed.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// The folder the invocations' groups are made in.
    parent: PathBuf,
    v2: bool,
    /// What this runtime's groups are named after: the process and which of its runtimes.
    prefix: String,
    /// Groups made so far: each is named with the next number, so none is made twice.
    made: Arc<AtomicU64>,
    /// v1: the group of the cpu hierarchy every child enters too (`share_cpu`).
    cpu: Option<PathBuf>,
    /// v1: this process's folder in the cpu hierarchy, found with the memory one.
    cpu_above: Option<PathBuf>,
}

/// The kernel's weight of each nice value from 0 to 19 (`sched_prio_to_weight`): a step
/// is about 10% less CPU against a task that competes for it.
const NICE_WEIGHTS: [u64; 20] = [
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
];

/// Runtimes started in this process, so that each names its groups apart.
static RUNTIMES: AtomicU32 = AtomicU32::new(0);

/// One invocation's group; removed (in the background, once its processes are gone) when
/// dropped.
#[derive(Debug)]
pub(crate) struct Group {
    path: PathBuf,
    v2: bool,
    limit: u64,
    cpu: Option<PathBuf>,
}

impl Cgroups {
    /// Finds a memory cgroup hierarchy this process may make groups in, preferring v2; the
    /// error says why there is none.
    pub fn probe() -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup ({e})"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo ({e})"))?;
        let v2 = own_folder(&own, &mounts, None);
        let v1 = own_folder(&own, &mounts, Some("memory"));
        let mut found = match (v2, v1) {
            (Some(dir), _) if has_controller(&dir, "memory") => Self::under_v2(&dir),
            (_, Some(dir)) => Self::under_v1(&dir),
            (Some(dir), None) => Err(format!(
                "the memory controller is not delegated to {}",
                dir.display()
            )),
            (None, None) => Err("no cgroup filesystem is mounted".to_string()),
        }?;
        let runtime = RUNTIMES.fetch_add(1, Ordering::Relaxed);
        found.prefix = format!("{}-{runtime}-", std::process::id());
        if !found.v2 {
            found.cpu_above = own_folder(&own, &mounts, Some("cpu"));
        }
        found.sweep();
        Ok(found)
    }

    fn under_v1(own: &Path) -> Result<Self, String> {
        let parent = own.join("basin");
        make_folder(&parent)?;
        Ok(Self {
            parent,
            v2: false,
            prefix: String::new(),
            made: Arc::default(),
            cpu: None,
            cpu_above: None,
        })
    }

    /// With v2 a group with controllers for its children may hold no process itself: when
    /// Basin's group does and Basin is alone in it, Basin moves into a group `basin-main`
    /// beside its invocations'; a group shared with other processes is left as it is.
    fn under_v2(own: &Path) -> Result<Self, String> {
        // Moved there by an earlier runtime of this process: its groups go beside it.
        let own = match own.parent() {
            Some(above) if own.ends_with("basin-main") => above,
            _ => own,
        };
        if !enable_memory(own)? {
            let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
            let me = std::process::id().to_string();
            if procs.lines().any(|p| p.trim() != me) {
                return Err(format!(
                    "{} holds other processes besides Basin, so it cannot hold groups with \
                     limits (start Basin in a cgroup of its own, e.g. `systemd-run --user \
                     --scope -p Delegate=yes basin serve`)",
                    own.display()
                ));
            }
            let main = own.join("basin-main");
            make_folder(&main)?;
            write(&main.join("cgroup.procs"), &me)?;
            if !enable_memory(own)? {
                return Err(format!(
                    "cannot enable the memory controller under {}",
                    own.display()
                ));
            }
        }
        let parent = own.join("basin");
        make_folder(&parent)?;
        if !enable_memory(&parent)? {
            return Err(format!(
                "cannot enable the memory controller under {}",
                parent.display()
            ));
        }
        Ok(Self {
            parent,
            v2: true,
            prefix: String::new(),
            made: Arc::default(),
            cpu: None,
            cpu_above: None,
        })
    }

    /// Holds the CPU of every function together to the share of one task `nice` steps below
    /// Basin when the machine is busy (nice 0 puts the share back to Basin's); returns how,
    /// for `basin doctor`, or why not. Without `apply` nothing is written: whether it could be
    /// (`basin doctor` must not change the share of a Basin already running).
    pub fn share_cpu(&mut self, nice: u8, apply: bool) -> Result<String, String> {
        let weight = NICE_WEIGHTS[usize::from(nice.min(19))];
        if self.v2 {
            // The folder `basin` and Basin's own group (or Basin itself) are siblings.
            let own = self
                .parent
                .parent()
                .ok_or("the cgroup folder has no parent")?;
            // cpu.weight counts 100 where nice 0 weighs 1024.
            let share = (weight * 100 / 1024).max(1);
            if !apply {
                if !has_controller(own, "cpu") {
                    return Err(format!(
                        "the cpu controller is not delegated to {}",
                        own.display()
                    ));
                }
            } else if !enable(own, "cpu")? {
                return Err(format!(
                    "cannot enable the cpu controller under {}",
                    own.display()
                ));
            } else {
                write(&self.parent.join("cpu.weight"), &share.to_string())?;
            }
            return Ok(format!(
                "the functions' cgroup weighs {share} against the default 100 (v2 cpu.weight)"
            ));
        }
        let above = self
            .cpu_above
            .clone()
            .ok_or("no cpu cgroup hierarchy is mounted")?;
        let group = above.join("basin");
        if !apply {
            rustix::fs::access(&above, rustix::fs::Access::WRITE_OK)
                .map_err(|e| format!("cannot make groups in {} ({e})", above.display()))?;
        } else {
            make_folder(&group)?;
            write(&group.join("cpu.shares"), &weight.to_string())?;
            // With cpu and memory mounted as one hierarchy the memory groups' parent holds
            // the share already: entering it would take a child out of its memory group.
            self.cpu = (group != self.parent && nice > 0).then_some(group);
        }
        Ok(format!(
            "the functions' cgroup has {weight} shares against 1024 (v1 cpu.shares)"
        ))
    }

    /// How the wall is built, for `basin doctor` and the start line.
    pub fn describe(&self) -> String {
        if self.v2 {
            "a cgroup per invocation (v2 memory.max)".to_string()
        } else {
            "a cgroup per invocation (v1 memory.limit_in_bytes)".to_string()
        }
    }

    /// Makes a new group, without a limit until `Group::set_limit`. Its name is new: a
    /// folder left by an earlier group (with its counts) is never taken over.
    pub(crate) fn create(&self) -> Result<Group, String> {
        let number = self.made.fetch_add(1, Ordering::Relaxed);
        let path = self.parent.join(format!("{}{number}", self.prefix));
        std::fs::create_dir(&path).map_err(|e| format!("cannot make {} ({e})", path.display()))?;
        if self.v2 {
            // Swap would let it hold more than its limit; one process stopped at the limit
            // stops them all.
            let _ = write(&path.join("memory.swap.max"), "0");
            let _ = write(&path.join("memory.oom.group"), "1");
        }
        Ok(Group {
            path,
            v2: self.v2,
            limit: u64::MAX,
            cpu: self.cpu.clone(),
        })
    }

    /// Removes the groups of Basin processes that are gone (killed before they could).
    fn sweep(&self) {
        self.remove_where(|name| {
            name.split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        });
    }

    /// Removes this runtime's groups whose processes have ended, for a runtime going away
    /// before its background removals ran; any left are swept by the next Basin to start.
    pub(crate) fn remove_own(&self) {
        self.remove_where(|name| name.starts_with(&self.prefix));
    }

    fn remove_where(&self, remove: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.parent) else {
            return;
        };
        for entry in entries.flatten() {
            if remove(&entry.file_name().to_string_lossy()) {
                if self.v2 {
                    // Anything its Basin left running ends (a v1 group with processes stays).
                    let _ = write(&entry.path().join("cgroup.kill"), "1");
                }
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

impl Group {
    /// Moves process `pid` (and its threads) into the group: what it allocates from now on,
    /// and every process it starts, is counted here. This waits for an RCU grace period
    /// when no process has moved for a while (about 10 ms on an idle machine), so a spare
    /// child is moved while it waits for its request (`zygote`), not on the request's path.
    pub(crate) fn enter(&self, pid: u32) -> Result<(), String> {
        write(&self.path.join("cgroup.procs"), &pid.to_string())?;
        // v1: the CPU share is another hierarchy's group, entered before the request too, so
        // that nothing the function starts is outside it. Not a wall: a failure is said, and
        // the function runs at its own nice value alone.
        if let Some(cpu) = &self.cpu
            && let Err(why) = write(&cpu.join("cgroup.procs"), &pid.to_string())
        {
            tracing::warn!("a function runs outside the functions' CPU group: {why}");
        }
        Ok(())
    }

    /// Limits the group to `limit` bytes, swap included.
    pub(crate) fn set_limit(&mut self, limit: u64) -> Result<(), String> {
        let bytes = limit.to_string();
        if self.v2 {
            write(&self.path.join("memory.max"), &bytes)?;
        } else {
            // The memory limit first: memsw may not be below it, and it is unlimited now.
            write(&self.path.join("memory.limit_in_bytes"), &bytes)?;
            let _ = write(&self.path.join("memory.memsw.limit_in_bytes"), &bytes);
        }
        self.limit = limit;
        Ok(())
    }

    /// Whether the kernel killed one of its processes at the group's limit (not for memory
    /// short elsewhere: the group reached its limit too).
    pub(crate) fn stopped_at_limit(&self) -> bool {
        let read = |file: &str| std::fs::read_to_string(self.path.join(file)).unwrap_or_default();
        let count = |text: &str, key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        if self.v2 {
            let events = read("memory.events");
            count(&events, "oom_kill ") > 0 && count(&events, "max ") > 0
        } else {
            // v1's failure counts stay 0 on recent kernels: the peak says it got there.
            count(&read("memory.oom_control"), "oom_kill ") > 0 && self.peak() >= self.limit
        }
    }

    /// The most memory the group held at once, as the kernel counts it.
    pub(crate) fn peak(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.path.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.v2 {
            // Kills whatever is left in it, even a process that left the invocation's group.
            let _ = write(&self.path.join("cgroup.kill"), "1");
        }
        let path = std::mem::take(&mut self.path);
        let remove = async move {
            // A group is removed once its processes have exited (the kernel frees their
            // memory first); patience grows from 10 ms to a second, for about a minute.
            let mut wait = Duration::from_millis(10);
            for _ in 0..70 {
                match std::fs::remove_dir(&path) {
                    Err(e) if e.kind() == ErrorKind::ResourceBusy => {}
                    _ => return,
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            tracing::warn!(group = %path.display(), "an invocation's cgroup still holds processes; left in place");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(remove);
            }
            Err(_) => {
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .map(|rt| rt.block_on(remove))
                });
            }
        }
    }
}

/// This process's cgroup folder in the v2 hierarchy (`v1` None) or in the v1 hierarchy of
/// the controller `v1`, from /proc/self/cgroup and where that hierarchy is mounted.
fn own_folder(own: &str, mountinfo: &str, v1: Option<&str>) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match v1 {
            None => id == "0" && controllers.is_empty(),
            Some(wanted) => controllers.split(',').any(|c| c == wanted),
        };
        wanted.then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mountpoint options [optional...] - fstype source super
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let (fstype, _source, super_options) = (right.next()?, right.next()?, right.next()?);
        let matches = match v1 {
            None => fstype == "cgroup2",
            Some(wanted) => fstype == "cgroup" && super_options.split(',').any(|o| o == wanted),
        };
        if !matches || fields.len() < 5 {
            return None;
        }
        let (root, mountpoint) = (unescape(fields[3]), unescape(fields[4]));
        // A mount of part of the hierarchy (a container's) shows paths below its root.
        let below = Path::new(path).strip_prefix(&root).ok()?;
        Some(Path::new(&mountpoint).join(below))
    })
}

/// A mountinfo field as written: space, tab, newline and backslash are octal escapes.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn has_controller(dir: &Path, controller: &str) -> bool {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// Turns on the memory controller for `dir`'s children; false when processes in `dir` keep
/// it from doing so.
fn enable_memory(dir: &Path) -> Result<bool, String> {
    enable(dir, "memory")
}

/// Turns on `controller` for `dir`'s children (v2); false when processes in `dir` keep it
/// from doing so.
fn enable(dir: &Path, controller: &str) -> Result<bool, String> {
    let control = dir.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&control).unwrap_or_default();
    if on.split_whitespace().any(|c| c == controller) {
        return Ok(true);
    }
    match std::fs::write(&control, format!("+{controller}")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::ResourceBusy => Ok(false),
        Err(e) => Err(format!("cannot write {} ({e})", control.display())),
    }
}

fn make_folder(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot make {} ({e})", dir.display())),
    }
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value).map_err(|e| format!("cannot write {} ({e})", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_folder_is_found_in_either_hierarchy_and_below_a_container_root() {
        let own = "4:memory:/process_api/abc\n1:cpu:/\n0::/user.slice/app.scope\n";
        let mounts = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
32 25 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
33 25 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
";
        assert_eq!(
            own_folder(own, mounts, Some("memory")).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            own_folder(own, mounts, None).unwrap(),
            Path::new("/sys/fs/cgroup/unified/user.slice/app.scope")
        );
        // `cpu` is its own hierarchy, not `cpuacct`'s.
        assert_eq!(
            own_folder(own, mounts, Some("cpu")).unwrap(),
            Path::new("/sys/fs/cgroup/cpu")
        );
        // A container sees its own part of the hierarchy mounted at the top; a path beside
        // that part is not below it.
        let inside = "0::/\n";
        let container = "40 35 0:30 /docker/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_folder("0::/docker/c1\n", container, None).unwrap(),
            Path::new("/sys/fs/cgroup")
        );
        assert!(own_folder("0::/docker/c10/x\n", container, None).is_none());
        assert!(own_folder(inside, "", None).is_none());
        // Mount points with spaces are written escaped.
        let spaced = "41 35 0:31 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_folder("0::/a\n", spaced, None).unwrap(),
            Path::new("/mnt/my cgroups/a")
        );
    }

    /// The functions' CPU share is a group's weight: nice 10's 110 shares (v1), or its 10
    /// in cpu.weight's scale of 100 (v2); nice 0 sets it back.
    #[test]
    fn the_functions_cpu_share_weighs_as_a_task_nice_steps_below() {
        let mut cgroups = Cgroups::probe().expect("a memory cgroup Basin may make groups in");
        assert!(cgroups.share_cpu(10, false).is_ok());
        let how = cgroups.share_cpu(10, true).expect("a CPU share");
        let (file, want) = match &cgroups.cpu {
            Some(group) => (group.join("cpu.shares"), "110"),
            None => (cgroups.parent.join("cpu.weight"), "10"),
        };
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().trim(),
            want,
            "{how}"
        );
        // Nice 0 puts Basin's share back, and no child enters the group.
        cgroups.share_cpu(0, true).unwrap();
        let back = if want == "110" { "1024" } else { "100" };
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), back);
        assert!(cgroups.cpu.is_none());
    }

    /// A process that holds memory no process maps (a memfd) is stopped at the group's
    /// limit, and the kernel's count says so.
    #[test]
    fn a_memfd_past_the_limit_is_stopped_by_the_kernel() {
        // The machines Basin is tested on let it make groups: without them the wall is missing.
        let cgroups = Cgroups::probe().expect("a memory cgroup Basin may make groups in");
        let mut group = cgroups.create().unwrap();
        group.set_limit(32 << 20).unwrap();
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys\nsys.stdin.read(1)\nfd=os.memfd_create('x')\n\
                 [os.write(fd, b'x'*(1<<20)) for _ in range(96)]\nprint('survived')",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        group.enter(child.id()).unwrap();
        drop(child.stdin.take()); // go
        let out = child.wait_with_output().unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("survived"),
            "the memfd outgrew the limit unstopped"
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9)
        );
        assert!(group.stopped_at_limit());
        assert!(group.peak() >= 30 << 20, "{}", group.peak());
    }
}
