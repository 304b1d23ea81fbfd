//! Shared-memory files whose pages are already allocated, kept between invocations, so the
//! tables handed to and from functions are written at memory speed. Writing into new pages of
//! `/dev/shm` runs at about 2 GB/s on a small VM (every page is allocated and zeroed on its
//! first write), into allocated ones at about 4.4 GB/s (`bench/run.sh --skip-tpch`, handoff).
//!
//! Two kinds of files:
//! - **fresh** ones, all zeros: only these are put where a *function* writes (its output file),
//!   since a function can read what is in the file before it writes. The refill makes them off
//!   the invocation's path, on an idle thread: from used files, zero-filled over the pages they
//!   already hold, or else new ones allocated with `fallocate` and zero-filled too (tmpfs clears
//!   fallocated pages only when they are first written, and on a VM the host backs a page only
//!   when it is first touched: both would otherwise fall on the function's first write);
//! - **used** ones: a past invocation's files (its inputs, and its output once Basin no longer
//!   maps it), taken back once every process of that invocation has ended. Only Basin writes
//!   into them (the next input: from the first byte, then cut to its length), so no byte of
//!   one invocation reaches another.
//!
//! An invocation takes a used file (its input) and a fresh one (its output), and both come
//! back: the refill zeroes one and keeps the other for the next input, so a steady stream of
//! invocations needs no new memory. New memory is allocated only when no fresh file is ready,
//! and gives way to a file that comes back meanwhile.
//!
//! The pool holds at most `[functions] handoff_pool` bytes (and a quarter of the scratch
//! filesystem's free space), and is emptied when no worker is alive (the keep-alive), so an
//! idle Basin holds no memory for it. `basin_function_handoff_pool_bytes` shows what it holds.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::options::RuntimeCounters;

/// Fresh files kept ready: one invocation's output, and the next one's.
const FRESH_TARGET: usize = 2;
/// The sizes of this many recent outputs decide the size of fresh files.
const RECENT: usize = 8;

#[derive(Debug)]
struct Pooled {
    path: PathBuf,
    /// Allocated bytes (not the length: a sparse file holds no memory).
    bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    fresh: Vec<Pooled>,
    used: Vec<Pooled>,
    /// Bytes of every file above, and of files being allocated.
    held: u64,
    recent: Vec<u64>,
    refilling: bool,
    next_name: u64,
}

impl State {
    /// A new name in the pool's folder `dir`: `kind` (f: fresh, u: used, m: a mapped output)
    /// and a number no other file of the pool has had.
    fn name(&mut self, dir: &Path, kind: char) -> PathBuf {
        self.next_name += 1;
        dir.join(format!("{kind}{}", self.next_name))
    }

    fn want(&self, cap: u64) -> u64 {
        let largest = self.recent.iter().copied().max().unwrap_or(0);
        largest.min(cap / FRESH_TARGET as u64)
    }
}

#[derive(Debug)]
pub(crate) struct Pool {
    dir: PathBuf,
    cap: u64,
    state: Mutex<State>,
    counters: Arc<RuntimeCounters>,
}

fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.blocks() * 512
}

impl Pool {
    /// A pool in `dir` (created, private) holding at most `cap` bytes, less when the
    /// filesystem has little room: a quarter of its free space.
    pub fn new(dir: PathBuf, cap: u64, counters: Arc<RuntimeCounters>) -> Self {
        let mut cap = cap;
        if cap > 0 {
            if crate::scratch::private_folder(&dir).is_err() {
                cap = 0;
            } else if let Ok(fs) = free_bytes(&dir) {
                cap = cap.min(fs / 4);
            }
        }
        Self {
            dir,
            cap,
            state: Mutex::new(State::default()),
            counters,
        }
    }

    fn set_held(&self, state: &State) {
        self.counters
            .handoff_pool_bytes
            .store(state.held, Ordering::Relaxed);
    }

    /// Moves a pooled file to `dest` for Basin to write an input into: a used one, else a
    /// fresh one. Returns the opened file (not truncated), or None when the pool has none.
    pub fn take_for_input(self: &Arc<Self>, dest: &Path) -> Option<File> {
        let taken = self.take(|s| largest(&mut s.used).or_else(|| largest(&mut s.fresh)));
        self.arrive(taken, dest)
    }

    /// Moves a fresh (zero-filled) file to `dest`, where a function will write.
    pub fn take_fresh(self: &Arc<Self>, dest: &Path) -> bool {
        let taken = self.take(|s| largest(&mut s.fresh));
        let placed = self.arrive(taken, dest).is_some();
        self.refill();
        placed
    }

    /// The file `pick` chooses, no longer counted as held.
    fn take(&self, pick: impl FnOnce(&mut State) -> Option<Pooled>) -> Option<Pooled> {
        let mut state = self.state.lock().expect("pool");
        let taken = pick(&mut state);
        if let Some(t) = &taken {
            state.held -= t.bytes;
        }
        self.set_held(&state);
        taken
    }

    fn arrive(self: &Arc<Self>, taken: Option<Pooled>, dest: &Path) -> Option<File> {
        let counted = |hit: bool| {
            let c = &self.counters;
            RuntimeCounters::count(if hit {
                &c.handoff_pool_hits
            } else {
                &c.handoff_pool_misses
            });
        };
        let Some(taken) = taken else {
            counted(false);
            return None;
        };
        let opened = std::fs::rename(&taken.path, dest).and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dest)
        });
        if opened.is_err() {
            let _ = std::fs::remove_file(&taken.path);
        }
        counted(opened.is_ok());
        opened.ok()
    }

    /// Remembers the size of a table a function wrote, which sizes the fresh files (where
    /// functions write), and starts allocating them. Inputs do not count: they go into used
    /// files, and a function that sums a large table into a few rows needs no large fresh ones.
    pub fn note(self: &Arc<Self>, bytes: u64) {
        {
            let mut state = self.state.lock().expect("pool");
            if state.recent.len() == RECENT {
                state.recent.remove(0);
            }
            state.recent.push(bytes);
        }
        self.refill();
    }

    /// Moves a file that cannot go back yet (an output Basin still maps as a function's
    /// result, or a file of an invocation whose processes are still ending) into the pool's
    /// folder, to be given back (`give_back`) later; returns its new path, or None when the
    /// pool keeps nothing (it is then removed with its folder).
    pub fn lease(&self, path: &Path) -> Option<PathBuf> {
        if self.cap == 0 {
            return None;
        }
        let leased = self.state.lock().expect("pool").name(&self.dir, 'm');
        std::fs::rename(path, &leased).ok().map(|()| leased)
    }

    /// Takes back `files` of an invocation whose processes are still ending, once `ended`
    /// says none is left: moved into the pool's folder now (so its workspace can go), kept or
    /// removed then, in the background. Basin goes on meanwhile, while the kernel frees the
    /// memory of the ending processes on another core.
    pub fn give_back_after(
        self: &Arc<Self>,
        files: impl IntoIterator<Item = PathBuf>,
        ended: impl std::future::Future<Output = bool> + Send + 'static,
    ) {
        let leased: Vec<PathBuf> = files.into_iter().filter_map(|f| self.lease(&f)).collect();
        if leased.is_empty() {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let gone = ended.await;
            for path in leased {
                if !(gone && pool.give_back(&path)) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        });
    }

    /// Takes back a file of an invocation that has ended (none of its processes alive):
    /// a regular file with no other name, kept as a used file while the pool has room.
    /// Returns whether it was kept (otherwise the caller removes it with its folder).
    pub fn give_back(self: &Arc<Self>, path: &Path) -> bool {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return false;
        };
        // SAFETY: geteuid cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        let bytes = allocated(&meta);
        if !meta.file_type().is_file() || meta.nlink() != 1 || !ours || bytes < meta.len() / 2 {
            return false;
        }
        let mut state = self.state.lock().expect("pool");
        if self.cap == 0 || state.held + bytes > self.cap {
            return false;
        }
        let pooled = state.name(&self.dir, 'u');
        if std::fs::rename(path, &pooled).is_err() {
            return false;
        }
        state.held += bytes;
        state.used.push(Pooled {
            path: pooled,
            bytes,
        });
        self.set_held(&state);
        drop(state);
        self.refill();
        true
    }

    /// Makes fresh files in the background until `FRESH_TARGET` are ready, one task at a time:
    /// from used files (but the last, while a fresh one is ready), else, when none is ready,
    /// from new memory.
    pub fn refill(self: &Arc<Self>) {
        {
            let mut state = self.state.lock().expect("pool");
            let enough = state.fresh.len() >= FRESH_TARGET || state.want(self.cap) == 0;
            if state.refilling || self.cap == 0 || enough {
                return;
            }
            state.refilling = true;
        }
        let pool = self.clone();
        std::thread::spawn(move || {
            // Only on a core nothing else wants: never slowing the invocation it prepares for.
            let idle = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets this thread's own scheduling class; no memory is handed over.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
            pool.fill()
        });
    }

    fn fill(&self) {
        loop {
            let (path, old_bytes, want, new) = {
                let mut state = self.state.lock().expect("pool");
                let want = state.want(self.cap);
                if state.fresh.len() >= FRESH_TARGET || want == 0 {
                    state.refilling = false;
                    return;
                }
                // A used file's pages are allocated already: zeroed, it is a fresh one (grown
                // to `want` if the pool has room). One is kept for the next input while a
                // fresh file is ready: an input takes a fresh file when no used one is left,
                // and every invocation would then need new memory.
                let spare = state.used.len() > 1 || state.fresh.is_empty();
                if let Some(used) = spare.then(|| fitting(&mut state.used, want)).flatten() {
                    let grow = state.held + want.saturating_sub(used.bytes) <= self.cap;
                    (used.path, used.bytes, if grow { want } else { 0 }, false)
                } else {
                    // New memory only when no fresh file is ready: the files of the
                    // invocations running now come back as used ones.
                    if !state.fresh.is_empty() || state.held + want > self.cap {
                        state.refilling = false;
                        return;
                    }
                    state.held += want;
                    self.set_held(&state);
                    (state.name(&self.dir, 'f'), want, want, true)
                }
            };
            // Still counted as held (`old_bytes`) while it is being zero-filled. A new file
            // gives way to a used one that comes back meanwhile: zeroing that is quicker
            // than allocating (1 GiB of new pages took this idle thread 1.9 s beside an
            // invocation), and the next output would not find a fresh file in time.
            let gives_way = |state: &State| new && !state.used.is_empty();
            let made = zero_filled(&path, want, || gives_way(&self.state.lock().expect("pool")));
            let mut state = self.state.lock().expect("pool");
            match made {
                Some(bytes) => {
                    state.held = state.held - old_bytes + bytes;
                    state.fresh.push(Pooled { path, bytes });
                    self.set_held(&state);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                    state.held -= old_bytes;
                    self.set_held(&state);
                    // Gave way (the used file is zeroed next), or failed.
                    if !gives_way(&state) {
                        state.refilling = false;
                        return;
                    }
                }
            }
        }
    }

    /// Frees every pooled file: no worker is alive, so nothing will be handed over soon.
    pub fn clear(&self) {
        let mut state = self.state.lock().expect("pool");
        if state.refilling {
            return; // the refill's file would be counted twice; the next wake clears it
        }
        let state = &mut *state;
        for pooled in state.fresh.drain(..).chain(state.used.drain(..)) {
            let _ = std::fs::remove_file(&pooled.path);
        }
        state.held = 0;
        state.recent.clear();
        self.set_held(state);
    }
}

fn largest(files: &mut Vec<Pooled>) -> Option<Pooled> {
    let (i, _) = files.iter().enumerate().max_by_key(|(_, f)| f.bytes)?;
    Some(files.swap_remove(i))
}

/// The smallest file that holds `bytes`, else the largest: the larger files stay for inputs
/// (a function that answers a large input with a small table, or hands its input back by
/// reference, leaves a large used file and a small one; the small one is the fresh file its
/// next output needs).
fn fitting(files: &mut Vec<Pooled>, bytes: u64) -> Option<Pooled> {
    let holds = files.iter().enumerate().filter(|(_, f)| f.bytes >= bytes);
    match holds.min_by_key(|(_, f)| f.bytes) {
        Some((i, _)) => Some(files.swap_remove(i)),
        None => largest(files),
    }
}

/// Makes `path` (created if missing) a file of at least `bytes` zeros, every page of which is
/// allocated and written here, a piece at a time; the allocated size, or None (also when
/// `stop` says so between pieces).
fn zero_filled(path: &Path, bytes: u64, stop: impl Fn() -> bool) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
    const PIECE: u64 = 64 << 20;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .ok()?;
    let len = file.metadata().ok()?.len().max(bytes);
    let mut at = 0;
    while at < len {
        if at % PIECE == 0 {
            if stop() {
                return None;
            }
            let piece = (len - at).min(PIECE);
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), at, piece).ok()?;
        }
        let n = (len - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at).ok()?;
        at += n as u64;
    }
    file.metadata().ok().map(|m| allocated(&m))
}

/// Free bytes of the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let fs = rustix::fs::statvfs(dir)?;
    Ok(fs.f_bavail.saturating_mul(fs.f_frsize))
}

/// Counts a pool's bytes while tests look at it.
#[cfg(test)]
impl Pool {
    fn held(&self) -> u64 {
        self.state.lock().expect("pool").held
    }
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("pool");
        (s.fresh.len(), s.used.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pool(cap: u64) -> (tempfile::TempDir, Arc<Pool>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = Arc::new(Pool::new(
            dir.path().join("pool"),
            cap,
            Arc::new(RuntimeCounters::default()),
        ));
        (dir, pool)
    }

    fn wait_filled(pool: &Pool) {
        for _ in 0..500 {
            if !pool.state.lock().expect("pool").refilling {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the refill did not finish");
    }

    fn all_zeros(path: &Path) -> bool {
        let bytes = std::fs::read(path).expect("read");
        bytes.len() >= 1 << 20 && bytes.iter().all(|b| *b == 0)
    }

    #[test]
    fn fresh_files_are_zero_and_used_ones_go_only_to_inputs() {
        let (dir, pool) = pool(64 << 20);
        pool.note(1 << 20);
        wait_filled(&pool);
        // New memory for one fresh file: no invocation's files have come back yet.
        assert_eq!(pool.counts(), (1, 0));
        assert!(pool.held() >= 1 << 20);

        // A function's output file: fresh, so all zeros. The next one is made anew.
        let out = dir.path().join("output.arrow");
        assert!(pool.take_fresh(&out));
        assert!(all_zeros(&out));
        wait_filled(&pool);
        assert_eq!(pool.counts(), (1, 0));

        // An input that held secrets, taken back while a fresh file is ready: kept as it
        // is, for the next input, which is opened without truncation.
        let input = dir.path().join("input-0.arrow");
        std::fs::write(&input, vec![7u8; 1 << 20]).expect("write");
        assert!(pool.give_back(&input));
        assert!(!input.exists());
        wait_filled(&pool);
        assert_eq!(pool.counts(), (1, 1));
        let next = dir.path().join("input-1.arrow");
        let mut file = pool.take_for_input(&next).expect("a pooled file");
        file.write_all(b"new").expect("write");
        assert_eq!(&std::fs::read(&next).expect("read")[..4], b"new\x07");
    }

    #[test]
    fn used_files_become_fresh_ones_zeroed_over_their_own_pages() {
        let (dir, pool) = pool(64 << 20);
        // Three inputs that held secrets, taken back before any output said what size fresh
        // files should have.
        for i in 0..3 {
            let input = dir.path().join(format!("input-{i}.arrow"));
            std::fs::write(&input, vec![7u8; 1 << 20]).expect("write");
            assert!(pool.give_back(&input));
        }
        assert_eq!(pool.counts(), (0, 3));
        let held = pool.held();
        pool.note(1 << 20);
        wait_filled(&pool);
        // Made fresh from the used files, the last kept for the next input: no new memory.
        assert_eq!(pool.counts(), (2, 1));
        assert_eq!(pool.held(), held);
        for i in 0..3 {
            let out = dir.path().join(format!("output-{i}.arrow"));
            assert!(pool.take_fresh(&out));
            assert!(all_zeros(&out), "a used file was handed out with its bytes");
            // The last used file becomes fresh once none is ready.
            wait_filled(&pool);
        }
        // New memory only once no file was left.
        assert_eq!((pool.counts(), pool.held()), ((1, 0), 1 << 20));
    }

    #[test]
    fn an_invocations_files_coming_back_refill_the_pool_without_new_memory() {
        let (dir, pool) = pool(64 << 20);
        // A first invocation, with the pool empty: its input and output come back.
        for name in ["input", "output"] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
            assert!(pool.give_back(&path));
        }
        pool.note(1 << 20);
        wait_filled(&pool);
        assert_eq!(pool.counts(), (1, 1));
        let mut steady = None;
        for round in 0..4 {
            // An invocation: its input into a used file, its output into a fresh one.
            let input = dir.path().join(format!("input-{round}.arrow"));
            let output = dir.path().join(format!("output-{round}.arrow"));
            let mut file = pool
                .take_for_input(&input)
                .expect("a pooled file for the input");
            file.write_all(&[7u8; 1 << 10]).expect("write");
            assert!(pool.take_fresh(&output), "no fresh file in round {round}");
            wait_filled(&pool);
            // Both come back: one becomes fresh, one waits for the next input.
            assert!(pool.give_back(&input));
            assert!(pool.give_back(&output));
            wait_filled(&pool);
            assert_eq!(pool.counts(), (2, 1), "round {round}");
            // Once the pool holds an invocation's files, it needs no new memory.
            let held = *steady.get_or_insert(pool.held());
            assert_eq!(pool.held(), held, "new memory in round {round}");
        }
    }

    #[test]
    fn a_large_input_back_beside_a_small_output_stays_for_the_next_input() {
        let (dir, pool) = pool(64 << 20);
        // An invocation that answered a large input with a small table (or handed its input
        // back by reference): the small file becomes the fresh one the next output needs.
        for (name, bytes) in [("input", 8 << 20), ("output", 1 << 20)] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![7u8; bytes]).expect("write");
            assert!(pool.give_back(&path));
        }
        pool.note(1 << 20);
        wait_filled(&pool);
        assert_eq!(pool.counts(), (1, 1));
        let next = dir.path().join("input-1.arrow");
        pool.take_for_input(&next).expect("a pooled file");
        let allocated = allocated(&std::fs::metadata(&next).expect("metadata"));
        assert!(allocated >= 8 << 20, "the next input got {allocated} bytes");
    }

    #[test]
    fn a_new_file_gives_way_to_a_used_one_that_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, Ordering::Relaxed) == 2;
        assert_eq!(zero_filled(&path, 256 << 20, stop), None);
        // Stopped before its third piece of 64 MiB: the pieces after it were not allocated.
        let meta = std::fs::metadata(&path).expect("file");
        assert_eq!(allocated(&meta), 128 << 20);
        assert_eq!(zero_filled(&path, 256 << 20, || false), Some(256 << 20));
    }

    #[test]
    fn links_other_names_and_a_full_pool_are_not_taken_back() {
        let (dir, pool) = pool(4 << 20);
        let target = dir.path().join("target");
        std::fs::write(&target, vec![1u8; 1 << 20]).expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(!pool.give_back(&link), "a symbolic link");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&target, &hard).expect("link");
        assert!(!pool.give_back(&hard), "a file with another name");
        std::fs::remove_file(&hard).expect("rm");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![1u8; 8 << 20]).expect("write");
        assert!(!pool.give_back(&big), "over the pool's size");
        assert!(pool.give_back(&target));
        assert_eq!(pool.counts(), (0, 1));
        pool.clear();
        assert_eq!((pool.counts(), pool.held()), ((0, 0), 0));
        assert_eq!(
            std::fs::read_dir(dir.path().join("pool"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn a_pool_of_size_zero_keeps_nothing() {
        let (dir, pool) = pool(0);
        pool.note(1 << 20);
        pool.refill();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(!pool.give_back(&file));
        assert!(pool.take_for_input(&dir.path().join("g")).is_none());
        assert_eq!(pool.held(), 0);
    }
}
