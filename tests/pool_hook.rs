//! The Pool's panic hook: installed once, in the parent, at build(); it records a task's panic in
//! a worker and hands every other panic to the hook that was there before.

mod common;

use std::sync::Mutex;

use mproc::{Error, Pool};

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[test]
fn the_pool_hook_records_worker_panics_and_delegates_the_parents_to_the_previous_hook() {
    common::run("pool_hook", common::SECS(30), || {
        std::panic::set_hook(Box::new(|info| {
            SEEN.lock().unwrap().push(mproc::worker::index().map_or("parent", |_| "worker").to_owned());
            let _ = info;
        }));
        let pool = Pool::new(1).unwrap();
        let err = pool.apply(|_, x: u8| if x == 1 { panic!("in a worker") } else { x }, 1).unwrap_err();
        match err {
            // The location comes from the pool's hook, which ran in the worker.
            Error::TaskPanicked { task: 0, message } => {
                assert!(message.starts_with("in a worker (at tests/pool_hook.rs:"), "{message}")
            }
            other => panic!("expected TaskPanicked, got {other}"),
        }
        assert!(std::panic::catch_unwind(|| panic!("in the parent")).is_err());
        assert_eq!(*SEEN.lock().unwrap(), vec!["parent".to_owned()], "the previous hook got the parent's panic only");
        // A second pool does not stack a second hook.
        let again = Pool::new(1).unwrap();
        assert!(again.apply(|_, _: u8| -> u8 { panic!("again") }, 0).is_err());
        assert!(std::panic::catch_unwind(|| panic!("in the parent, again")).is_err());
        assert_eq!(SEEN.lock().unwrap().len(), 2);
        let _ = std::panic::take_hook();
    });
}
