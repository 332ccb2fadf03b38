//! Shared memory: segments, a bump arena that places typed objects in them, and the [`ShmSafe`]
//! marker for the types allowed there.
//!
//! Two kinds of segment:
//! - **anonymous** (`mmap(MAP_SHARED | MAP_ANONYMOUS)`), created before fork and inherited by the
//!   children. It has no name, so it cannot leak: the kernel frees it when the last process that
//!   maps it exits. Every `Lock`, `Value`, `Flag`, … lives in one.
//! - **named** (`shm_open`, visible in `/dev/shm`), for processes that are not related by fork. The
//!   name is random (`mproc-<pid>-<12 hex>`), created with `O_EXCL` and mode 0600, and its whole size
//!   is reserved up front so a full `/dev/shm` is an error now, not a `SIGBUS` later. Only the
//!   process that created it unlinks it — a forked child dropping its copy does not (the
//!   `shared_memory` crate gets this wrong, which is why mproc does not build on it). If the
//!   creator dies without unlinking (SIGKILL), its **guardian** process removes the name (see
//!   `guardian.rs` for the design); [`Segment::persist`] hands a name on so that it outlives its
//!   creator.
//!
//! A [`NamedArena`] is a named segment with a header and a directory, in which one program
//! places `Queue`s, `Lock`s, `Value`s, … under names for other programs to open (`named.rs`).

pub(crate) mod arena;
mod guardian;
pub(crate) mod named;
mod safe;
mod segment;
mod shmbox;

pub use arena::Arena;
pub use guardian::GuardedFile;
pub use named::{NamedArena, NamedObject, ObjectInfo, ObjectKind};
pub use safe::{Plain, ShmSafe};
pub use segment::Segment;
pub(crate) use segment::{Mapping, mapping_serial};
pub use shmbox::ShmBox;
