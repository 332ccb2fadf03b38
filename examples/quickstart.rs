//! The library in one page: a Pool whose tasks share an early-exit flag and a counter, then a lock whose holder is killed. Run: `cargo run --release --example quickstart`
//!
//! Everything shared is created before the pool forks its workers, and handed to every task as
//! the pool's context: nothing is pickled or copied per task.

use mproc::{Flag, Lock, LockError, Pool, Process, RawValue};

/// What every task sees: a flag to stop early, and a count of the numbers actually checked.
struct Shared {
    found: Flag,
    checked: RawValue<u64>,
}

fn main() -> mproc::Result<()> {
    let shared = Shared { found: Flag::new()?, checked: RawValue::new(0)? };
    let pool = Pool::builder().processes(2).context(shared).build()?;

    // Look for a multiple of 7919 among 1..=1_000_000; every worker stops once one is found.
    let hits = pool.map(
        |s: &Shared, n: u64| {
            if s.found.is_set() {
                return None;
            }
            s.checked.fetch_add(1);
            n.is_multiple_of(7919).then(|| {
                s.found.set();
                n
            })
        },
        1..=1_000_000u64,
        None,
    )?;
    let first = hits.iter().flatten().min().copied();
    let checked = pool.context().checked.load();
    println!("found {first:?} after checking {checked} of 1000000 numbers (the flag stopped the rest)");

    // A process that dies holding a lock: the next locker is told, and the lock works again.
    let (lock, holding) = (Lock::new()?, Flag::new()?);
    let mut child = Process::spawn(|| {
        let _held = lock.lock();
        holding.set();
        std::thread::sleep(std::time::Duration::from_secs(60)); // killed long before this ends
    })?;
    while !holding.is_set() {
        std::hint::spin_loop();
    }
    child.kill()?;
    println!("holder {}", child.join()?);
    match lock.lock() {
        Err(LockError::OwnerDied { pid, guard }) => {
            println!("the lock's holder (pid {pid:?}) died holding it; recovered");
            drop(guard);
        }
        Ok(_) => println!("the lock was free"),
        Err(e) => return Err(e.into()),
    }
    drop(lock.lock()?);
    println!("the lock works again: {:?}", lock.stats());
    Ok(())
}
