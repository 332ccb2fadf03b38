//! Lock costs: uncontended lock+unlock, and an increment under the lock with two processes
//! hammering it. `Lock`, `RawValue::fetch_add` and `FileLock` are measured beside the bare
//! primitives they wrap (a robust pthread mutex; an flock/unlock pair), in the same run.
//!
//! Run: `cargo bench --bench locks` (or `make bench`). Contended figures are per increment,
//! summed over both processes (total time / total increments).

use std::fs::File;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mproc::raw::RobustMutex;
use mproc::{FileLock, Lock, Process, RawValue};

fn lock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mproc-bench-{}-{tag}.lock", std::process::id()))
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let raw = RobustMutex::new_shared().unwrap();
    g.bench_function("robust_pthread_mutex", |b| {
        b.iter(|| {
            let _ = raw.lock();
            // SAFETY: locked on the line above by this thread.
            unsafe { raw.unlock() };
        })
    });
    let lock = Lock::new().unwrap();
    g.bench_function("Lock", |b| b.iter(|| drop(lock.lock().unwrap())));
    let v = RawValue::new(0u64).unwrap();
    g.bench_function("RawValue_fetch_add", |b| b.iter(|| v.fetch_add(1)));
    let p = lock_path("bare");
    let f = File::options().create(true).truncate(false).write(true).open(&p).unwrap();
    g.bench_function("flock_pair", |b| {
        b.iter(|| {
            f.lock().unwrap();
            f.unlock().unwrap();
        })
    });
    let fl = FileLock::new(lock_path("fl"));
    g.bench_function("FileLock", |b| b.iter(|| drop(fl.lock().unwrap())));
    g.finish();
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_file(lock_path("fl"));
}

/// Times `iters` calls of `op` in this process while a forked child runs `iters` calls too,
/// both released at once. Returns the time per call over both processes.
fn two_processes(iters: u64, op: &dyn Fn()) -> Duration {
    let ready = RawValue::new(0u32).unwrap();
    let go = mproc::Flag::new().unwrap();
    let mut child = Process::spawn(|| {
        ready.store(1);
        while !go.is_set() {
            std::hint::spin_loop();
        }
        for _ in 0..iters {
            op();
        }
    })
    .unwrap();
    while ready.load() == 0 {
        std::hint::spin_loop();
    }
    let t0 = Instant::now();
    go.set();
    for _ in 0..iters {
        op();
    }
    assert!(child.join().unwrap().success());
    t0.elapsed() / 2
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended_2proc_increment");
    g.measurement_time(Duration::from_secs(3));
    let n = RawValue::new(0u64).unwrap();

    let raw = RobustMutex::new_shared().unwrap();
    g.bench_function("robust_pthread_mutex", |b| {
        b.iter_custom(|iters| {
            two_processes(iters, &|| {
                let _ = raw.lock();
                n.store(n.load() + 1);
                // SAFETY: locked on the first line of this closure by this thread.
                unsafe { raw.unlock() };
            })
        })
    });
    let lock = Lock::new().unwrap();
    g.bench_function("Lock", |b| {
        b.iter_custom(|iters| {
            two_processes(iters, &|| {
                let _g = lock.lock().unwrap();
                n.store(n.load() + 1);
            })
        })
    });
    g.bench_function("RawValue_fetch_add", |b| {
        b.iter_custom(|iters| {
            two_processes(iters, &|| {
                n.fetch_add(1);
            })
        })
    });
    let fl = FileLock::new(lock_path("flc"));
    g.bench_function("FileLock", |b| {
        b.iter_custom(|iters| {
            two_processes(iters, &|| {
                let _g = fl.lock().unwrap();
                n.store(n.load() + 1);
            })
        })
    });
    g.finish();
    let _ = std::fs::remove_file(lock_path("flc"));
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
