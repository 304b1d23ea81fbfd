//! A small mutation fuzzer for Basin's parsers, on stable Rust.
//!
//! **Not coverage-guided.** cargo-fuzz (libFuzzer) needs a nightly toolchain for its
//! instrumentation, and Basin builds with stable Rust only. So each case takes a seed from
//! the checked-in corpus (`fuzz/corpus/TARGET/`, realistic inputs) and applies one to four
//! random edits: bit flips, byte and token insertions, deletions, duplications and
//! truncations, line and field edits, splices with another seed, and fragments from the
//! target's dictionary (its punctuation, keywords and edge values). Realistic seeds with
//! structure-aware edits get deep into a parser without feedback, but a branch no seed comes
//! near is found only by luck: add a seed when a new input shape matters.
//!
//! A target is a function from bytes to `Ok(())` or `Err(the property that broke)`. A panic
//! is a failure too, and a case that runs longer than [`CASE_TIMEOUT`] is a hang (reported,
//! then the process exits, since a hung thread cannot be stopped).
//!
//! - [`replay`] runs every corpus file once: a normal test, so CI replays the corpus.
//! - [`run`] mutates for `BASIN_FUZZ_SECONDS` (default 60) and saves a failing input,
//!   minimized, into the corpus as `crash-HASH`, where [`replay`] keeps it as a regression
//!   case. `BASIN_FUZZ_SEED` repeats a run. `scripts/fuzz.sh` runs every target this way.

use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one case may run before it counts as a hang.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(20);

/// Inputs never grow past this.
const MAX_LEN: usize = 64 * 1024;

/// Bytes that often sit on a parser's decision points.
const INTERESTING: &[u8] = b"\0\n\r\t \"',;:|\\{}[]()-+.=#0\x7f\x80\xbf\xef\xff";

/// A property check: `Err` says what broke.
pub type Verdict = Result<(), String>;

/// Seeds a target takes from elsewhere in the repository, read in place rather than copied
/// into its corpus: the policy target starts from the TPC-H queries the SQL tests run.
fn shared_seeds(target: &str) -> &'static [&'static str] {
    match target {
        "policy" => &["tests/data/tpch/queries"],
        _ => &[],
    }
}

/// The corpus of `target`: every file in `fuzz/corpus/TARGET/` and in its shared seed
/// folders, each named by its path from the workspace's root.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let own = format!("fuzz/corpus/{target}");
    let mut files = Vec::new();
    for folder in std::iter::once(own.as_str()).chain(shared_seeds(target).iter().copied()) {
        let dir = workspace_root().join(folder);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()));
        for entry in entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(entry.path())
                .unwrap_or_else(|e| panic!("cannot read {folder}/{name}: {e}"));
            files.push((format!("{folder}/{name}"), bytes));
        }
    }
    files.sort();
    assert!(!files.is_empty(), "the corpus {own} is empty");
    files
}

fn workspace_root() -> PathBuf {
    // crates/NAME -> the workspace's root. `cargo test` sets CARGO_MANIFEST_DIR when it runs a
    // test too (the crate under test, also in crates/): read then, it is right even when the
    // build was reused from a clone of the workspace elsewhere.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn corpus_dir(target: &str) -> PathBuf {
    workspace_root().join("fuzz/corpus").join(target)
}

/// Runs `check` on every corpus file of `target`; panics listing every file that fails.
pub fn replay(target: &str, mut check: impl FnMut(&[u8]) -> Verdict) {
    let watchdog = Watchdog::start(target, false);
    let mut failures = Vec::new();
    for (name, bytes) in corpus(target) {
        watchdog.begin(&bytes, &name);
        if let Err(why) = run_case(&mut check, &bytes) {
            failures.push(format!("{name}: {why}"));
        }
        watchdog.end();
    }
    assert!(
        failures.is_empty(),
        "{} corpus file(s) fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Mutates the corpus of `target` for `BASIN_FUZZ_SECONDS`, checking each case; prints the
/// number of cases, and panics on the first failure after saving its input (minimized) into
/// the corpus.
pub fn run(target: &str, dictionary: &[&str], mut check: impl FnMut(&[u8]) -> Verdict) {
    let seconds: f64 = setting("BASIN_FUZZ_SECONDS").map_or(60.0, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("BASIN_FUZZ_SECONDS={v} is not a number"))
    });
    let seed: u64 = setting("BASIN_FUZZ_SEED").map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        },
        |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("BASIN_FUZZ_SEED={v} is not a number"))
        },
    );
    let seeds = corpus(target);
    let mut mutator = Mutator {
        rng: fastrand::Rng::with_seed(seed),
        dictionary,
    };
    let watchdog = Watchdog::start(target, true);
    let started = Instant::now();
    let budget = Duration::from_secs_f64(seconds.max(0.0));
    let mut cases = 0u64;
    let mut failure = None;
    while started.elapsed() < budget {
        let (_, seed_bytes) = &seeds[mutator.rng.usize(..seeds.len())];
        let (_, other) = &seeds[mutator.rng.usize(..seeds.len())];
        let input = mutator.mutate(seed_bytes, other);
        watchdog.begin(&input, "a mutated input");
        let verdict = run_case(&mut check, &input);
        watchdog.end();
        cases += 1;
        if let Err(why) = verdict {
            failure = Some((input, why));
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {cases} cases in {elapsed:.1} s ({:.0}/s), {} failure(s), seed {seed}",
        cases as f64 / elapsed.max(1e-9),
        u8::from(failure.is_some()),
    );
    if let Some((input, why)) = failure {
        let small = minimize(&mut check, input);
        let saved = save(target, &small);
        let verdict = run_case(&mut check, &small).err().unwrap_or(why);
        panic!(
            "fuzz {target}: {verdict}\n  input saved as {} ({} bytes); it now replays with \
             `cargo test --workspace --lib -- fuzz::{target}`",
            saved.display(),
            small.len()
        );
    }
}

/// A test-time setting from the environment (the fuzzer's only configuration).
fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn run_case(check: &mut impl FnMut(&[u8]) -> Verdict, input: &[u8]) -> Verdict {
    match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(verdict) => verdict,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(format!("panicked: {message}"))
        }
    }
}

/// Drops chunks of a failing input while it still fails, halving the chunk size, for a
/// regression case a person can read. Bounded, since each try runs the target.
fn minimize(check: &mut impl FnMut(&[u8]) -> Verdict, mut input: Vec<u8>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut chunk = input.len() / 2;
    while chunk > 0 && Instant::now() < deadline {
        let mut at = 0;
        while at < input.len() && Instant::now() < deadline {
            let mut smaller = input.clone();
            smaller.drain(at..(at + chunk).min(input.len()));
            if run_case(check, &smaller).is_err() {
                input = smaller;
            } else {
                at += chunk;
            }
        }
        chunk /= 2;
    }
    input
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    let mut hasher = std::hash::DefaultHasher::new();
    input.hash(&mut hasher);
    let path = corpus_dir(target).join(format!("crash-{:016x}", hasher.finish()));
    if let Err(e) = std::fs::write(&path, input) {
        eprintln!("cannot save {}: {e}", path.display());
    }
    path
}

/// Watches the case in progress from another thread: one that runs past [`CASE_TIMEOUT`]
/// is reported (and, when fuzzing, saved) and the process exits.
struct Watchdog {
    current: Arc<Mutex<Option<Case>>>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(target: &str, save_hangs: bool) -> Self {
        let current: Arc<Mutex<Option<Case>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (watched, stop, target) = (current.clone(), done.clone(), target.to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let guard = watched.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(case) = guard.as_ref()
                    && case.since.elapsed() > CASE_TIMEOUT
                {
                    let saved = save_hangs.then(|| save(&target, &case.input));
                    eprintln!(
                        "fuzz {target}: {} ran for more than {} s (a hang){}",
                        case.name,
                        CASE_TIMEOUT.as_secs(),
                        saved.map_or(String::new(), |p| format!("; saved as {}", p.display()))
                    );
                    std::process::exit(1);
                }
            }
        });
        Self { current, done }
    }

    fn begin(&self, input: &[u8], name: &str) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Case {
            since: Instant::now(),
            input: input.to_vec(),
            name: name.to_string(),
        });
    }

    fn end(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The case in progress: since when, its input, and what to call it.
struct Case {
    since: Instant,
    input: Vec<u8>,
    name: String,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

struct Mutator<'a> {
    rng: fastrand::Rng,
    dictionary: &'a [&'a str],
}

impl<'a> Mutator<'a> {
    fn mutate(&mut self, seed: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = seed.to_vec();
        for _ in 0..self.rng.usize(1..=4) {
            self.edit(&mut data, other);
        }
        data.truncate(MAX_LEN);
        data
    }

    fn edit(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        let len = data.len();
        match self.rng.u8(0..13) {
            0 if len > 0 => {
                let at = self.rng.usize(..len);
                data[at] ^= 1 << self.rng.u8(0..8);
            }
            1 if len > 0 => {
                let at = self.rng.usize(..len);
                data[at] = INTERESTING[self.rng.usize(..INTERESTING.len())];
            }
            2 => {
                let at = self.rng.usize(..=len);
                let byte = if self.rng.bool() {
                    INTERESTING[self.rng.usize(..INTERESTING.len())]
                } else {
                    self.rng.u8(..)
                };
                data.insert(at, byte);
            }
            3 if len > 0 => {
                let (from, to) = self.range(len);
                data.drain(from..to);
            }
            4 if len > 0 => {
                let (from, to) = self.range(len);
                let copy = data[from..to].to_vec();
                let at = self.rng.usize(..=len);
                data.splice(at..at, copy);
            }
            5 if len > 0 => data.truncate(self.rng.usize(..len)),
            6 if !self.dictionary.is_empty() => {
                let word = self.word();
                let at = self.rng.usize(..=len);
                data.splice(at..at, word.bytes());
            }
            7 if !self.dictionary.is_empty() => {
                let word = self.word();
                let (from, to) = self.token(data);
                data.splice(from..to, word.bytes());
            }
            8 => self.edit_lines(data),
            9 => self.edit_fields(data),
            10 if !other.is_empty() => {
                // The start of this input, the end of another.
                let cut = self.rng.usize(..=len);
                let from = self.rng.usize(..other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            11 if len > 0 => {
                let (from, to) = self.range(len);
                let copy = data[from..to].to_vec();
                let times = self.rng.usize(2..=64);
                for _ in 0..times {
                    if data.len() + copy.len() > MAX_LEN {
                        break;
                    }
                    data.splice(to..to, copy.iter().copied());
                }
            }
            12 if len > 1 => {
                // Two bytes trade places (a quote and a delimiter, a brace and a comma).
                let (a, b) = (self.rng.usize(..len), self.rng.usize(..len));
                data.swap(a, b);
            }
            _ => {
                let at = self.rng.usize(..=len);
                data.insert(at, self.rng.u8(..));
            }
        }
    }

    fn word(&mut self) -> &'a str {
        self.dictionary[self.rng.usize(..self.dictionary.len())]
    }

    /// A short range, mostly; sometimes a long one.
    fn range(&mut self, len: usize) -> (usize, usize) {
        let from = self.rng.usize(..len);
        let most = if self.rng.u8(..8) == 0 {
            len - from
        } else {
            (len - from).min(16)
        };
        (from, from + self.rng.usize(1..=most))
    }

    /// The alphanumeric run around a random position (empty between two punctuation marks).
    fn token(&mut self, data: &[u8]) -> (usize, usize) {
        let at = self.rng.usize(..=data.len());
        let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.';
        let from = data[..at]
            .iter()
            .rposition(|b| !word(b))
            .map_or(0, |p| p + 1);
        let to = data[at..]
            .iter()
            .position(|b| !word(b))
            .map_or(data.len(), |p| at + p);
        (from, to)
    }

    /// Duplicates, drops or swaps whole lines.
    fn edit_lines(&mut self, data: &mut Vec<u8>) {
        let mut lines: Vec<Vec<u8>> = data
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        if lines.is_empty() {
            return;
        }
        let a = self.rng.usize(..lines.len());
        let b = self.rng.usize(..lines.len());
        match self.rng.u8(..3) {
            0 => {
                let copy = lines[a].clone();
                lines.insert(b, copy);
            }
            1 => {
                lines.remove(a);
            }
            _ => lines.swap(a, b),
        }
        *data = lines.concat();
    }

    /// Duplicates or drops one field: the text from a separator to the next.
    fn edit_fields(&mut self, data: &mut Vec<u8>) {
        const SEPARATORS: &[u8] = b",\t|;:= \n";
        let starts: Vec<usize> = data
            .iter()
            .enumerate()
            .filter(|(_, b)| SEPARATORS.contains(b))
            .map(|(i, _)| i)
            .collect();
        if starts.is_empty() {
            return;
        }
        let from = starts[self.rng.usize(..starts.len())];
        let to = data[from + 1..]
            .iter()
            .position(|b| SEPARATORS.contains(b))
            .map_or(data.len(), |p| from + 1 + p);
        if self.rng.bool() {
            let copy = data[from..to].to_vec();
            data.splice(to..to, copy);
        } else {
            data.drain(from..to);
        }
    }
}
