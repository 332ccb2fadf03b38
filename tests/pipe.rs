//! Pipe: two Connections between processes; end of file when the peer drops or dies.

mod common;

use std::time::{Duration, Instant};

use mproc::{Connection, Error, Pipe, Process};

/// A child that sends `msg` through `b`, then sleeps until it is killed.
fn peer_that_says(b: Connection, msg: &'static str) -> Process {
    Process::spawn(move || -> mproc::Result<()> {
        b.send(&msg)?;
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    })
    .unwrap()
}

#[test]
fn ten_thousand_round_trips_between_two_processes_arrive_in_order() {
    common::run("pipe_ping_pong", common::SECS(60), || {
        let (a, b) = Pipe::new().unwrap();
        let mut p = Process::spawn(move || -> mproc::Result<()> {
            loop {
                match b.recv::<(u64, String)>() {
                    Ok((n, s)) => b.send(&(n + 1, s.to_uppercase()))?,
                    Err(Error::Disconnected) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .unwrap();
        for n in 0..10_000u64 {
            a.send(&(n, format!("m{n}"))).unwrap();
            assert_eq!(a.recv::<(u64, String)>().unwrap(), (n + 1, format!("M{n}")));
        }
        a.send_bytes(b"\xff\x00raw").unwrap(); // not a valid (u64, String): the child's recv fails
        let st = p.join().unwrap();
        assert!(!st.success(), "the child reports the undecodable message: {st}");
    });
}

#[test]
fn a_killed_peer_is_end_of_file_after_the_messages_it_sent() {
    common::run("pipe_peer_killed", common::SECS(30), || {
        let (a, b) = Pipe::new().unwrap();
        let mut p = peer_that_says(b, "last words");
        assert_eq!(a.recv::<String>().unwrap(), "last words");
        p.kill().unwrap();
        p.join().unwrap();
        let t = Instant::now();
        assert!(matches!(a.recv::<String>(), Err(Error::Disconnected)));
        assert!(t.elapsed() < Duration::from_secs(1), "end of file took {:?}", t.elapsed());
        assert!(a.poll(Duration::ZERO).unwrap(), "poll is true at end of file");
        assert!(matches!(a.send(&1u8), Err(Error::Disconnected)));
    });
}

/// A killed peer its parent has not reaped yet (a zombie, which `kill(pid, 0)` still finds) is
/// end of file all the same: the waiting side reads `/proc`, not only the pid's existence.
#[test]
fn a_killed_peer_not_yet_reaped_is_end_of_file_too() {
    common::run("pipe_zombie_peer", common::SECS(30), || {
        let (a, b) = Pipe::new().unwrap();
        let mut p = peer_that_says(b, "hello");
        assert_eq!(a.recv::<String>().unwrap(), "hello");
        p.kill().unwrap(); // not joined yet: a zombie until the end of the test
        let t = Instant::now();
        assert!(matches!(a.recv::<String>(), Err(Error::Disconnected)));
        assert!(t.elapsed() < Duration::from_secs(2), "end of file took {:?}", t.elapsed());
        p.join().unwrap();
    });
}

/// A peer killed without dropping its end is noticed by `send` within 64 messages even while
/// the pipe has room (the kernel is asked on every 64th send, and when it is full).
#[test]
fn sends_to_a_killed_peer_fail_within_64_messages_while_the_pipe_has_room() {
    common::run("pipe_send_dead_peer", common::SECS(30), || {
        let (a, b) = Pipe::builder().capacity(256).build().unwrap();
        let mut p = peer_that_says(b, "ready");
        assert_eq!(a.recv::<String>().unwrap(), "ready");
        for i in 0..10u32 {
            a.send(&i).unwrap(); // a live peer: sent
        }
        p.kill().unwrap();
        p.join().unwrap();
        let sent = (0..=64).take_while(|&i| a.send(&i).is_ok()).count();
        assert!(sent < 64, "{sent} messages were sent to a dead peer");
        assert!(matches!(a.send(&0u32), Err(Error::Disconnected)));
    });
}

#[test]
fn one_way_pipes_poll_timeouts_and_ends_shared_by_two_processes_are_clear_errors() {
    common::run("pipe_errors", common::SECS(30), || {
        let (rx, tx) = Pipe::builder().duplex(false).build().unwrap();
        assert!(matches!(rx.send(&1u8), Err(Error::Misuse(_))));
        assert!(matches!(tx.recv::<u8>(), Err(Error::Misuse(_))));
        assert!(!rx.poll(Duration::from_millis(10)).unwrap());
        assert!(matches!(rx.recv_timeout::<u8>(Duration::from_millis(10)), Err(Error::Timeout)));
        tx.send(&7u8).unwrap();
        assert!(rx.poll(Duration::from_millis(10)).unwrap());
        assert_eq!(rx.recv::<u8>().unwrap(), 7);
        // `rx` belongs to this process now: a child may not use it too.
        let mut p = Process::spawn(|| match rx.recv::<u8>() {
            Err(Error::Misuse(m)) if m.contains("belongs to process") => 0,
            _ => 1,
        })
        .unwrap();
        assert!(p.join().unwrap().success());
        let big = Pipe::builder().max_message_bytes(100).build().unwrap();
        assert!(matches!(big.0.send_bytes(&[0; 200]), Err(Error::MessageTooLarge { .. })));
        // The limit is exact: a message of 100 bytes crosses whole, 101 is refused and says 100.
        let msg: Vec<u8> = (0..100u8).collect();
        big.0.send_bytes(&msg).unwrap();
        assert_eq!(big.1.recv_bytes().unwrap(), msg);
        assert!(matches!(big.0.send_bytes(&[7; 101]), Err(Error::MessageTooLarge { size: 101, limit: 100, .. })));
        // Empty messages too, and serde values through the same bytes.
        big.0.send_bytes(&[]).unwrap();
        assert!(big.1.recv_bytes().unwrap().is_empty());
        big.1.send(&("pipe", 3u8)).unwrap();
        assert_eq!(big.0.recv::<(String, u8)>().unwrap(), ("pipe".to_owned(), 3));
    });
}
