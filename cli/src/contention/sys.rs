//! Every raw libc call of the contention tool: plain process-shared pthread mutexes, the futex
//! syscall (shared, no `FUTEX_PRIVATE_FLAG`: a private futex only works inside one process),
//! POSIX and System V semaphores, fcntl record locks, getrusage and CPU affinity. The rest of the
//! tool uses the safe wrappers below.
#![allow(clippy::disallowed_methods)] // the CLI's one fence for raw calls (libc::syscall, pthread)

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU32;

fn rc(call: &str, r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::Error::from_raw_os_error(r).kind(),
            format!("{call}: {}", io::Error::from_raw_os_error(r)),
        ))
    }
}

fn errno(call: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// A process-shared pthread mutex that is *not* robust: a holder that dies leaves it locked.
#[repr(transparent)]
pub struct PlainMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex synchronises internally; all access is through pthread calls.
unsafe impl Sync for PlainMutex {}
// SAFETY: no pointers while unlocked, valid at any address once initialised there, zero is a
// valid (normal, unlocked) glibc mutex, no Drop.
unsafe impl mproc::ShmSafe for PlainMutex {}

impl PlainMutex {
    /// Initialises a process-shared, non-robust mutex in place.
    ///
    /// # Safety
    /// - `this` is valid for writes, aligned, and never moves afterwards;
    /// - no other thread or process uses it during initialisation.
    pub unsafe fn init(this: *mut PlainMutex) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before other use and destroyed
        // before it goes out of scope; `this` is valid per the caller's contract.
        unsafe {
            rc("pthread_mutexattr_init", libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let a = attr.as_mut_ptr();
            let r =
                rc("pthread_mutexattr_setpshared", libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED))
                    .and_then(|()| rc("pthread_mutex_init", libc::pthread_mutex_init((*this).0.get(), a)));
            libc::pthread_mutexattr_destroy(a);
            r
        }
    }

    /// Blocks until held.
    #[inline]
    pub fn lock(&self) -> io::Result<()> {
        // SAFETY: initialised in place by `init` (the only way to get one in use) and never moved.
        rc("pthread_mutex_lock", unsafe { libc::pthread_mutex_lock(self.0.get()) })
    }

    /// Takes it if free; `false` if someone holds it.
    #[inline]
    pub fn try_lock(&self) -> bool {
        // SAFETY: as in `lock`.
        unsafe { libc::pthread_mutex_trylock(self.0.get()) == 0 }
    }

    /// Releases it.
    ///
    /// # Safety
    /// The calling thread holds it.
    #[inline]
    pub unsafe fn unlock(&self) {
        // SAFETY: the caller holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}

/// `pthread_mutex_trylock` on a mutex that another crate owns (raw_sync's `as_raw()`): its own
/// "try" is a timed lock that still sleeps in the kernel once when the lock is held.
///
/// # Safety
/// `m` points to an initialised pthread mutex that stays in place while it is in use.
#[inline]
pub unsafe fn pthread_try_raw(m: *mut std::ffi::c_void) -> bool {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_trylock(m.cast()) == 0 }
}

/// Sleeps while `*word == expected` (a shared futex: usable across processes).
#[inline]
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT only reads
    // it and returns at once if it no longer holds `expected`. A null timeout waits indefinitely.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, std::ptr::null::<libc::timespec>())
    };
}

/// Wakes one sleeper on `word`.
#[inline]
pub fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not touch its value.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// A POSIX unnamed semaphore (`sem_init` with pshared = 1) that lives in shared memory.
#[repr(transparent)]
pub struct PosixSem(UnsafeCell<libc::sem_t>);

// SAFETY: a pshared sem_t synchronises internally; all access is through sem_* calls.
unsafe impl Sync for PosixSem {}
// SAFETY: no pointers, position-independent once initialised in place, no Drop (sem_destroy of
// a pshared semaphore is a no-op on Linux); zero is overwritten by `init` before use.
unsafe impl mproc::ShmSafe for PosixSem {}

impl PosixSem {
    /// Initialises it in place with `value`, shared between processes.
    ///
    /// # Safety
    /// `this` is valid for writes, aligned, never moves afterwards and is not in use yet.
    pub unsafe fn init(this: *mut PosixSem, value: u32) -> io::Result<()> {
        // SAFETY: per the caller's contract.
        if unsafe { libc::sem_init((*this).0.get(), 1, value) } == 0 { Ok(()) } else { Err(errno("sem_init")) }
    }

    /// Decrements, sleeping while it is 0.
    #[inline]
    pub fn wait(&self) -> io::Result<()> {
        loop {
            // SAFETY: initialised in place by `init` and never moved.
            if unsafe { libc::sem_wait(self.0.get()) } == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(io::Error::new(e.kind(), format!("sem_wait: {e}")));
            }
        }
    }

    /// Decrements if it is above 0; `false` otherwise.
    #[inline]
    pub fn try_wait(&self) -> bool {
        // SAFETY: as in `wait`.
        unsafe { libc::sem_trywait(self.0.get()) == 0 }
    }

    /// Increments.
    #[inline]
    pub fn post(&self) {
        // SAFETY: as in `wait`.
        unsafe { libc::sem_post(self.0.get()) };
    }
}

/// A System V semaphore set of one, private to this process tree, removed when the creating
/// process drops it. Operations use `SEM_UNDO`, so the kernel undoes a dead holder's decrement.
pub struct SysvSem {
    id: libc::c_int,
    creator: u32,
}

impl SysvSem {
    /// A new semaphore with `value`.
    pub fn new(value: i32) -> io::Result<SysvSem> {
        // SAFETY: semget has no memory preconditions.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(errno("semget"));
        }
        let s = SysvSem { id, creator: std::process::id() };
        // SAFETY: SETVAL takes `union semun`, whose `int val` member is passed as a plain int
        // through the varargs on the Linux ABIs we build for.
        if unsafe { libc::semctl(id, 0, libc::SETVAL, value as libc::c_int) } < 0 {
            return Err(errno("semctl(SETVAL)"));
        }
        Ok(s)
    }

    fn op(&self, delta: i16, flags: i16) -> io::Result<bool> {
        let mut b = libc::sembuf { sem_num: 0, sem_op: delta, sem_flg: flags | libc::SEM_UNDO as i16 };
        loop {
            // SAFETY: `b` is one valid sembuf, and the count passed is 1.
            if unsafe { libc::semop(self.id, &mut b, 1) } == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(false),
                _ => return Err(io::Error::new(e.kind(), format!("semop: {e}"))),
            }
        }
    }

    /// Decrements, sleeping while it is 0.
    #[inline]
    pub fn wait(&self) -> io::Result<()> {
        self.op(-1, 0).map(|_| ())
    }

    /// Decrements if it is above 0; `false` otherwise.
    #[inline]
    pub fn try_wait(&self) -> io::Result<bool> {
        self.op(-1, libc::IPC_NOWAIT as i16)
    }

    /// Increments.
    #[inline]
    pub fn post(&self) -> io::Result<()> {
        self.op(1, 0).map(|_| ())
    }
}

impl Drop for SysvSem {
    fn drop(&mut self) {
        if std::process::id() == self.creator {
            // SAFETY: IPC_RMID on our own set; no argument is read.
            unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) };
        }
    }
}

/// Which fcntl record lock: classic POSIX (owned by the process) or open-file-description.
#[derive(Clone, Copy)]
pub enum RecordLock {
    Posix,
    Ofd,
}

/// Takes (`wait`: blocking) or releases (`unlock`) a write lock on the whole of `file`.
/// Returns `false` when a non-blocking attempt found it held.
pub fn record_lock(file: &std::fs::File, kind: RecordLock, unlock: bool, wait: bool) -> io::Result<bool> {
    let cmd = match (kind, wait) {
        (RecordLock::Posix, true) => libc::F_SETLKW,
        (RecordLock::Posix, false) => libc::F_SETLK,
        (RecordLock::Ofd, true) => libc::F_OFD_SETLKW,
        (RecordLock::Ofd, false) => libc::F_OFD_SETLK,
    };
    // SAFETY: all-zero is a valid `struct flock`; the fields that matter are set below
    // (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if unlock { libc::F_UNLCK } else { libc::F_WRLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: `file` is an open descriptor for the call; `fl` is a valid flock the kernel reads.
        if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) if !wait => return Ok(false),
            _ => return Err(io::Error::new(e.kind(), format!("fcntl: {e}"))),
        }
    }
}

/// Voluntary + involuntary context switches of this process so far.
pub fn context_switches() -> u64 {
    // SAFETY: all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (ru.ru_nvcsw + ru.ru_nivcsw) as u64
}

/// Runs `f` pinned to `cpu`, then gives this process back the CPUs it had. Children forked
/// inside `f` start pinned to `cpu` too (they inherit the mask) until they [`pin_to`] another.
pub fn with_cpu<R>(cpu: usize, f: impl FnOnce() -> R) -> io::Result<R> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut had: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `had` is a valid, writable cpu_set_t of the size passed; pid 0 is this process.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut had) } != 0 {
        return Err(errno("sched_getaffinity"));
    }
    pin_to(cpu)?;
    let r = f();
    // SAFETY: `had` is the valid cpu_set_t read above.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &had) } != 0 {
        return Err(errno("sched_setaffinity"));
    }
    Ok(r)
}

/// Pins this process to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of `set`; `cpu` is taken modulo the set's capacity.
    unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this process.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } == 0 {
        Ok(())
    } else {
        Err(errno("sched_setaffinity"))
    }
}
