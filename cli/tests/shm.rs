//! `mproc shm list`: the objects inside a named arena, by name and in the full listing.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use mproc::{Event, Lock, NamedArena, Queue, Value};

fn mproc_shm(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mproc")).arg("shm").args(args).output().unwrap();
    assert!(out.status.success(), "mproc shm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shm_list_shows_each_object_of_a_named_arena_with_its_type_offset_and_size() {
    common::run("shm_list", common::SECS(60), || {
        let name = format!("mproc-{}-list", std::process::id());
        let arena = NamedArena::create(&name, 1 << 16).unwrap();
        let _q = arena.add("jobs", |a| Queue::<u64>::new_in(a, 32, 16)).unwrap();
        let _v = arena.add("count", |a| Value::new_in(a, 0u32)).unwrap();
        let _l = arena.add("guard", Lock::new_in).unwrap();
        let _e = arena.add("stop", Event::new_in).unwrap();
        let objects = arena.objects().unwrap();
        for out in [mproc_shm(&["list", &name]), mproc_shm(&["list"])] {
            assert!(out.contains("named arena") && out.contains("4 objects"), "{out}");
            for (o, ty) in objects.iter().zip(["Queue<u64>", "Value<u32>", "Lock", "Event"]) {
                let line = out.lines().find(|l| l.split_whitespace().next() == Some(o.name.as_str())).unwrap_or("");
                let cols: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(cols, [o.name.as_str(), ty, &o.offset.to_string(), &o.size.to_string()], "{out}");
            }
        }
        assert!(mproc_shm(&["list"]).lines().any(|l| l == name));
    });
}
