//! The book's counters: N processes each add 1 to a shared count M times, guarded (or not) in
//! six ways. The unguarded variants lose updates; the guarded ones never do.

use std::fmt;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use mproc::{Barrier, Error, FileLock, Lock, Process, RawValue, Result, Value};

/// How the shared count is kept and guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// A text file, read then rewritten, with no lock (the book's `ex1_nolock`).
    FileNolock,
    /// The same under a [`FileLock`] (the book's `ex1_lock`).
    FileLock,
    /// A [`Value`] read then written, each under its own lock hold: `v.value += 1` in Python.
    ValueNolock,
    /// A [`Value`] incremented under one lock hold (`with v.get_lock(): v.value += 1`).
    ValueLock,
    /// A [`RawValue`] incremented with one atomic `fetch_add`.
    RawvalueAtomic,
    /// A [`RawValue`] read and written under a separate [`Lock`].
    RawvalueLock,
}

impl Variant {
    /// Every variant, in the book's order.
    pub const ALL: [Variant; 6] = [
        Variant::FileNolock,
        Variant::FileLock,
        Variant::ValueNolock,
        Variant::ValueLock,
        Variant::RawvalueAtomic,
        Variant::RawvalueLock,
    ];

    /// The variant's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::FileNolock => "file-nolock",
            Variant::FileLock => "file-lock",
            Variant::ValueNolock => "value-nolock",
            Variant::ValueLock => "value-lock",
            Variant::RawvalueAtomic => "rawvalue-atomic",
            Variant::RawvalueLock => "rawvalue-lock",
        }
    }

    /// Whether the variant guards its read-modify-write (and so must never lose an update).
    pub fn is_guarded(self) -> bool {
        !matches!(self, Variant::FileNolock | Variant::ValueNolock)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Variant> {
        super::by_name(s, &Variant::ALL, Variant::name, "counter variant")
    }
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker processes.
    pub processes: u32,
    /// Increments per process.
    pub count: u64,
    /// Start every worker together (a [`Barrier`]), so races really happen.
    pub barrier: bool,
    /// Where the file variants keep their files.
    pub dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config { processes: 4, count: 1000, barrier: false, dir: std::env::temp_dir() }
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// The variant.
    pub variant: &'static str,
    /// Worker processes.
    pub processes: u32,
    /// Increments per process.
    pub count: u64,
    /// `processes × count`.
    pub expected: u64,
    /// The final count.
    pub got: u64,
    /// `expected − got` (updates lost to races).
    pub lost: u64,
    /// Wall time from the first fork to the last join.
    pub seconds: f64,
}

/// Runs one variant.
pub fn run(variant: Variant, cfg: &Config) -> Result<Outcome> {
    if cfg.processes == 0 {
        return Err(Error::InvalidArgument("--processes must be at least 1".into()));
    }
    let expected = u64::from(cfg.processes)
        .checked_mul(cfg.count)
        .ok_or_else(|| Error::InvalidArgument("processes × count overflows u64".into()))?;
    let barrier = if cfg.barrier { Some(Barrier::new(cfg.processes)?) } else { None };
    let start_line = || -> Result<()> {
        if let Some(b) = &barrier {
            b.wait()?;
        }
        Ok(())
    };
    let t0 = Instant::now();
    let got = match variant {
        Variant::FileNolock | Variant::FileLock => {
            let files = CounterFiles::new(&cfg.dir, variant)?;
            let lock = FileLock::new(&files.lock);
            let guarded = variant == Variant::FileLock;
            spawn_all(cfg.processes, || {
                // Each process opens the count file once and rewrites its fixed-width field in
                // place: the figure is what the lock costs, not the filesystem's handling of a
                // truncated-then-rewritten file (which `fs::write` per increment measured).
                let file = fs::OpenOptions::new().read(true).write(true).open(&files.data)?;
                start_line()?;
                for _ in 0..cfg.count {
                    let _g = if guarded { Some(lock.lock()?) } else { None };
                    let n = read_count_at(&file)?;
                    file.write_all_at(&count_field(n + 1), 0)?;
                }
                Ok(())
            })?;
            read_count(&files.data)?
        }
        Variant::ValueNolock | Variant::ValueLock => {
            let v = Value::new(0u64)?;
            let guarded = variant == Variant::ValueLock;
            spawn_all(cfg.processes, || {
                start_line()?;
                for _ in 0..cfg.count {
                    if guarded {
                        *v.lock()? += 1;
                    } else {
                        let n = v.get()?;
                        v.set(n + 1)?;
                    }
                }
                Ok(())
            })?;
            v.get()?
        }
        Variant::RawvalueAtomic => {
            let v = RawValue::new(0u64)?;
            spawn_all(cfg.processes, || {
                start_line()?;
                for _ in 0..cfg.count {
                    v.fetch_add(1);
                }
                Ok(())
            })?;
            v.load()
        }
        Variant::RawvalueLock => {
            let v = RawValue::new(0u64)?;
            let lock = Lock::new()?;
            spawn_all(cfg.processes, || {
                start_line()?;
                for _ in 0..cfg.count {
                    let _g = lock.lock()?;
                    v.store(v.load() + 1);
                }
                Ok(())
            })?;
            v.load()
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Outcome {
        variant: variant.name(),
        processes: cfg.processes,
        count: cfg.count,
        expected,
        got,
        lost: expected.saturating_sub(got),
        seconds,
    })
}

/// Forks `n` workers running `work`, joins them all, and turns the first failure into an error.
fn spawn_all(n: u32, work: impl Fn() -> Result<()>) -> Result<()> {
    let mut procs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        procs.push(Process::spawn(&work)?);
    }
    let mut first_error = None;
    for mut p in procs {
        let st = p.join()?;
        if st.success() || first_error.is_some() {
            continue;
        }
        first_error = Some(match &st {
            mproc::ExitStatus::Panicked(_) | mproc::ExitStatus::Failed(_) => {
                Error::ChildFailed { pid: p.pid(), status: st.clone() }
            }
            _ => Error::WorkerDied { pid: p.pid(), signal: st.signal(), code: st.code(), task: None },
        });
    }
    first_error.map_or(Ok(()), Err)
}

/// The count file and its lock file: removed on drop, or by the process's guardian if this
/// process is killed first.
struct CounterFiles {
    data: PathBuf,
    lock: PathBuf,
    _guards: [mproc::GuardedFile; 2],
}

impl CounterFiles {
    fn new(dir: &Path, v: Variant) -> Result<CounterFiles> {
        let base = dir.join(format!("mproc-counter-{}-{}", std::process::id(), v.name()));
        let (data, lock) = (base.with_extension("txt"), base.with_extension("lock"));
        // Guarded before they exist: there is no moment when a kill would leave them behind.
        let guards = [mproc::GuardedFile::new(&data)?, mproc::GuardedFile::new(&lock)?];
        fs::write(&data, count_field(0))?;
        Ok(CounterFiles { data, lock, _guards: guards })
    }
}

/// Width of the count field: every `u64`, right-aligned, then a newline.
const FIELD: usize = 21;

/// The count as its fixed-width field.
fn count_field(n: u64) -> [u8; FIELD] {
    let mut b = [b' '; FIELD];
    b[FIELD - 1] = b'\n';
    let mut n = n;
    let mut i = FIELD - 1;
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b
}

/// Reads the count from the field at offset 0. As in the book, a field caught half-written by an
/// unguarded reader counts as 0 — one of the ways the unguarded variant loses updates.
fn read_count_at(f: &fs::File) -> Result<u64> {
    let mut b = [0u8; FIELD];
    let n = f.read_at(&mut b, 0)?;
    Ok(std::str::from_utf8(&b[..n]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0))
}

/// Reads the final count.
fn read_count(path: &Path) -> Result<u64> {
    Ok(fs::read_to_string(path)?.trim().parse().unwrap_or(0))
}
