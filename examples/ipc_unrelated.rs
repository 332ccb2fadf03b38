//! Two unrelated programs talk through named shared objects (a Queue each way, a Lock-guarded Value, an Event): run `cargo run --example ipc_unrelated -- --server`, then in another terminal `cargo run --example ipc_unrelated -- --client`.
//!
//! The server creates a named arena (`/dev/shm/mproc-ipc-demo`, mode 0600) holding:
//! - `requests`: a `Queue<(u32, String)>` the clients put `(pid, text)` into;
//! - `replies`: a `Queue<(u32, String)>` the server answers on;
//! - `served`: a `Value<u64>`, the number of requests served, behind its own lock;
//! - `stop`: an `Event` a client sets to end the server.
//!
//! The client knows only the names. It opens the arena, sends a few requests, prints the
//! replies and the counter, and sets `stop` (unless `--keep`). While the server runs,
//! `mproc shm list` shows the objects. Options: `--name NAME` (both sides), `--count N`
//! (client). The server removes the name when it ends — or, if it is killed, its guardian does.

use std::time::{Duration, Instant};

use mproc::{Event, NamedArena, Queue, Value};

type Msg = (u32, String);

struct Args {
    server: bool,
    client: bool,
    keep: bool,
    name: String,
    count: u32,
}

fn args() -> Result<Args, String> {
    let mut a = Args { server: false, client: false, keep: false, name: "mproc-ipc-demo".into(), count: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--server" => a.server = true,
            "--client" => a.client = true,
            "--keep" => a.keep = true,
            "--name" => a.name = it.next().ok_or("--name needs a value")?,
            "--count" => a.count = it.next().and_then(|n| n.parse().ok()).ok_or("--count needs a number")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.server == a.client {
        return Err("say --server or --client".into());
    }
    Ok(a)
}

fn server(a: &Args) -> mproc::Result<()> {
    let arena = NamedArena::create(&a.name, 1 << 16)?;
    let requests = arena.add("requests", |m| Queue::<Msg>::new_in(m, 64, 256))?;
    let replies = arena.add("replies", |m| Queue::<Msg>::new_in(m, 64, 256))?;
    let served = arena.add("served", |m| Value::new_in(m, 0u64))?;
    let stop = arena.add("stop", Event::new_in)?;
    println!("server {}: serving on {} (run the client now)", std::process::id(), arena.name());
    while !stop.is_set() {
        let (pid, text) = match requests.get_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(mproc::Error::Timeout) => continue,
            Err(e) => return Err(e),
        };
        let n = {
            let mut count = served.lock()?;
            *count += 1;
            *count
        };
        println!("server: request {n} from pid {pid}: {text:?}");
        replies.put((pid, format!("{} letters, request #{n}", text.chars().count())))?;
    }
    println!("server: stopped after {} requests", served.get()?);
    Ok(())
}

fn client(a: &Args) -> mproc::Result<()> {
    // The server may still be starting: retry for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let arena = loop {
        match NamedArena::open(&a.name) {
            Ok(arena) => break arena,
            Err(mproc::Error::SegmentNotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(e),
        }
    };
    // The server may not have added them all yet: wait for each (bounded).
    let wait = Duration::from_secs(5);
    let requests: Queue<Msg> = arena.get_timeout("requests", wait)?;
    let replies: Queue<Msg> = arena.get_timeout("replies", wait)?;
    let served: Value<u64> = arena.get_timeout("served", wait)?;
    let stop: Event = arena.get_timeout("stop", wait)?;
    for o in arena.objects()? {
        println!("client: found {} ({}, {} bytes at offset {})", o.name, o.type_label(), o.size, o.offset);
    }
    let me = std::process::id();
    for i in 0..a.count {
        requests.put((me, format!("hello number {i} from an unrelated process")))?;
        let (to, reply) = replies.get_timeout(Duration::from_secs(5))?;
        assert_eq!(to, me, "one client at a time: replies are not addressed");
        println!("client: reply: {reply}");
    }
    println!("client: the server has served {} requests so far", served.get()?);
    if !a.keep {
        stop.set();
        println!("client: asked the server to stop");
    }
    Ok(())
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ipc_unrelated: {e}\nusage: ipc_unrelated --server | --client [--name NAME] [--count N] [--keep]"
            );
            std::process::exit(2);
        }
    };
    let r = if a.server { server(&a) } else { client(&a) };
    if let Err(e) = r {
        eprintln!("ipc_unrelated: {e}");
        std::process::exit(1);
    }
}
