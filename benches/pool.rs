//! Pool overhead: trivial tasks at chunk size 1 and automatic (map, map_plain, map_range, imap), and start-up (build + one task +
//! close + join), at 2 worker processes. Run: `cargo bench --bench pool`. The CLI gives the same
//! figures with Python's beside them: `make compare`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mproc::Pool;

const TASKS: u64 = 20_000;

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_2proc");
    g.throughput(Throughput::Elements(TASKS));
    g.measurement_time(Duration::from_secs(3));
    let pool = Pool::new(2).unwrap();
    g.bench_function("map_identity_chunksize_1", |b| b.iter(|| pool.map(|_, x: u64| x, 0..TASKS, Some(1)).unwrap()));
    g.bench_function("map_identity_chunksize_auto", |b| b.iter(|| pool.map(|_, x: u64| x, 0..TASKS, None).unwrap()));
    g.bench_function("map_plain_identity_chunksize_auto", |b| {
        b.iter(|| pool.map_plain(|_, x: u64| x, 0..TASKS, None).unwrap())
    });
    g.bench_function("map_range_identity_chunksize_auto", |b| {
        b.iter(|| pool.map_range(|_, x: u64| x, 0..TASKS, None).unwrap())
    });
    g.bench_function("imap_identity_chunksize_16", |b| {
        b.iter(|| pool.imap(|_, x: u64| x, 0..TASKS, 16).unwrap().map(Result::unwrap).sum::<u64>())
    });
    drop(pool);
    g.throughput(Throughput::Elements(1));
    g.bench_function("startup_build_one_task_join", |b| {
        b.iter(|| {
            let pool = Pool::new(2).unwrap();
            pool.apply(|_, x: u64| x, 1).unwrap();
            pool.close();
            pool.join().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
