//! `mproc bench queue`: ping-pong latency and one-way throughput (1→1 and 2→2 processes) of
//! mproc's `Queue` (serde and its plain-data path) and `Pipe` beside a Unix socket pair and
//! ipc-channel, between forked processes, measured the same way in the same run; and how soon a
//! `get` asleep in the futex returns after a `put`; beside the round trips, the floor under them
//! all: one shared word handed back and forth.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mproc::{Pipe, Process, Queue, RawArray};

use crate::bench::median;

#[derive(clap::Args)]
pub struct QueueArgs {
    /// Message sizes in bytes, comma-separated.
    #[arg(long, default_value = "8,1024,65536,1048576")]
    sizes: String,
    /// Round trips per latency figure (fewer for large messages: at most 64 MiB moved).
    #[arg(long, default_value_t = 20_000)]
    round_trips: u64,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Ping-pong with this process on CPU 0 and its echo on CPU 1, so that both sides spin on a
    /// core of their own (unpinned, a scheduler that puts both on one core now and then makes the
    /// round trip bimodal). The throughput runs stay unpinned.
    #[arg(long)]
    pin: bool,
}

/// `--pin` was given (read by the echo processes, which the parent forks pinned to CPU 0).
static PIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First thing in a ping-pong's echo process: under `--pin`, move from the parent's CPU 0 to 1.
fn echo_cpu() -> mproc::Result<()> {
    if PIN.load(std::sync::atomic::Ordering::Relaxed) {
        crate::contention::sys::pin_to(1)?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Row {
    bench: &'static str,
    transport: &'static str,
    bytes: usize,
    round_trip_us: f64,
    /// 1 → 1 process.
    items_per_s: f64,
    gb_per_s: f64,
    /// 2 producers → 2 consumers: one shared queue for `Queue`; two independent pairs for the
    /// point-to-point transports (a pipe, a socket or a channel has one reader).
    items_per_s_2x2: f64,
    gb_per_s_2x2: f64,
    /// `wake` rows: put → return of a `get` asleep in the futex, median µs.
    wake_us: f64,
    /// Round trips run with `--pin`.
    pinned: bool,
    parallelism: f64,
}

/// A plain-data item of `N` bytes (bytemuck's own array impls stop at a few sizes).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Blob<const N: usize>([u8; N]);

// SAFETY: an array of bytes: every bit pattern valid, zero included, no padding.
unsafe impl<const N: usize> mproc::bytemuck::Zeroable for Blob<N> {}
// SAFETY: as above; `Copy`, `'static`, no pointers.
unsafe impl<const N: usize> mproc::bytemuck::Pod for Blob<N> {}

/// Messages for one figure: `n` capped so at most 64 MiB travel.
fn count(n: u64, bytes: usize) -> u64 {
    n.min((64 << 20) / bytes.max(1) as u64).max(100)
}

/// Slots of a throughput run's queue: up to 256, at most 8 MiB of them, so that large items reuse
/// slots whose pages are mapped already (as a socket's kernel buffer is reused), instead of
/// timing the first touch of a fresh page per 4 KiB moved.
fn stream_capacity(bytes: usize) -> usize {
    ((8 << 20) / (bytes + 16)).clamp(4, 256)
}

/// Serde payload: a byte vector (postcard: a length, then a copy).
fn payload(bytes: usize) -> String {
    "x".repeat(bytes)
}

fn queue_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let max = bytes + 16;
    let (there, back) = (Queue::<String>::with_max_item_bytes(4, max)?, Queue::<String>::with_max_item_bytes(4, max)?);
    let mut echo = Process::spawn(|| {
        closing_on_error(&back, || {
            echo_cpu()?;
            for _ in 0..with_warm_up(n) {
                let m = there.get()?;
                back.put(m)?;
            }
            Ok(())
        })
    })?;
    // The message that comes back is sent again: no copy of it is made per round trip (the
    // other transports send from a buffer they keep, too).
    let mut msg = Some(payload(bytes));
    time_round_trips(n, &mut echo, || {
        there.put(msg.take().expect("back from the last round trip"))?;
        msg = Some(std::hint::black_box(back.get()?));
        Ok(())
    })
}

/// An echo's body: on an error (its CPU could not be set, a queue failed), closes `back` before
/// returning it, so that the parent's `get` ends with `Disconnected` instead of waiting for ever.
fn closing_on_error<T>(back: &Queue<T>, body: impl FnOnce() -> mproc::Result<()>) -> mproc::Result<()> {
    let r = body();
    if r.is_err() {
        back.close();
    }
    r
}

/// `k` producers and `k` consumers, `n` items in all, through one queue; items per second.
fn queue_stream(bytes: usize, n: u64, k: u64) -> mproc::Result<f64> {
    let q = Queue::<String>::with_max_item_bytes(stream_capacity(bytes), bytes + 16)?;
    let per = n / k;
    let consumers = (0..k)
        .map(|_| {
            Process::spawn(|| -> mproc::Result<()> {
                for _ in 0..per {
                    std::hint::black_box(q.get()?);
                }
                Ok(())
            })
        })
        .collect::<mproc::Result<Vec<_>>>()?;
    let msg = payload(bytes);
    let t = Instant::now();
    let producers = (0..k)
        .map(|_| {
            Process::spawn(|| -> mproc::Result<()> {
                for _ in 0..per {
                    q.put(msg.clone())?;
                }
                Ok(())
            })
        })
        .collect::<mproc::Result<Vec<_>>>()?;
    for mut p in producers.into_iter().chain(consumers) {
        p.join()?;
    }
    Ok((per * k) as f64 / t.elapsed().as_secs_f64())
}

/// A zeroed blob on the heap, never on the stack.
fn zeroed<const N: usize>() -> Box<Blob<N>> {
    // SAFETY: all zeroes is a valid `Blob` (an array of bytes).
    unsafe { Box::<Blob<N>>::new_zeroed().assume_init() }
}

/// Items larger than this go by reference (`put_plain_ref`, `get_plain_into`) from a `Box`:
/// moved by value, a 1 MiB array would overflow the stack.
const BY_VALUE: usize = 4096;

fn plain_ping_pong_n<const N: usize>(n: u64) -> mproc::Result<f64> {
    let (there, back) = (Queue::<Blob<N>>::plain(4)?, Queue::<Blob<N>>::plain(4)?);
    let mut echo = Process::spawn(|| {
        closing_on_error(&back, || {
            echo_cpu()?;
            let mut m: Box<Blob<N>> = zeroed();
            for _ in 0..with_warm_up(n) {
                if N <= BY_VALUE {
                    let m = there.get_plain()?;
                    back.put_plain(m)?;
                } else {
                    there.get_plain_into(&mut m)?;
                    back.put_plain_ref(&m)?;
                }
            }
            Ok(())
        })
    })?;
    let mut msg: Box<Blob<N>> = zeroed();
    let mut got: Box<Blob<N>> = zeroed();
    msg.0.fill(7);
    let s = time_round_trips(n, &mut echo, || {
        if N <= BY_VALUE {
            there.put_plain(*msg)?;
            std::hint::black_box(back.get_plain()?);
        } else {
            there.put_plain_ref(&msg)?;
            back.get_plain_into(&mut got)?;
        }
        Ok(())
    })?;
    std::hint::black_box(&got);
    Ok(s)
}

fn plain_stream_n<const N: usize>(n: u64, k: u64) -> mproc::Result<f64> {
    let q = Queue::<Blob<N>>::plain(stream_capacity(N))?;
    let per = n / k;
    let consumers = (0..k)
        .map(|_| {
            Process::spawn(|| -> mproc::Result<()> {
                let mut got: Box<Blob<N>> = zeroed();
                for _ in 0..per {
                    if N <= BY_VALUE {
                        std::hint::black_box(q.get_plain()?);
                    } else {
                        q.get_plain_into(&mut got)?;
                    }
                }
                std::hint::black_box(&got);
                Ok(())
            })
        })
        .collect::<mproc::Result<Vec<_>>>()?;
    let t = Instant::now();
    let producers = (0..k)
        .map(|_| {
            Process::spawn(|| -> mproc::Result<()> {
                let mut msg: Box<Blob<N>> = zeroed();
                msg.0.fill(7);
                for _ in 0..per {
                    if N <= BY_VALUE {
                        q.put_plain(*msg)?;
                    } else {
                        q.put_plain_ref(&msg)?;
                    }
                }
                Ok(())
            })
        })
        .collect::<mproc::Result<Vec<_>>>()?;
    for mut p in producers.into_iter().chain(consumers) {
        p.join()?;
    }
    Ok((per * k) as f64 / t.elapsed().as_secs_f64())
}

fn plain_size_error(bytes: usize) -> mproc::Error {
    mproc::Error::InvalidArgument(format!("the plain-data rows have sizes 8, 1024, 65536, 1048576, not {bytes}"))
}

/// The plain-data path for the sizes it has a type for (the bench's defaults).
fn plain_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    match bytes {
        8 => plain_ping_pong_n::<8>(n),
        1024 => plain_ping_pong_n::<1024>(n),
        65536 => plain_ping_pong_n::<65536>(n),
        1048576 => plain_ping_pong_n::<1048576>(n),
        _ => Err(plain_size_error(bytes)),
    }
}

fn plain_stream(bytes: usize, n: u64, k: u64) -> mproc::Result<f64> {
    match bytes {
        8 => plain_stream_n::<8>(n, k),
        1024 => plain_stream_n::<1024>(n, k),
        65536 => plain_stream_n::<65536>(n, k),
        1048576 => plain_stream_n::<1048576>(n, k),
        _ => Err(plain_size_error(bytes)),
    }
}

/// The round-trip row of the bare floor: no queue, one shared word handed back and forth.
const FLOOR: &str = "atomic floor";

/// One round-trip sample: `lat` run with this process on CPU 0 under `--pin` (its echo moves
/// itself to CPU 1).
fn round_trip(pin: bool, lat: impl FnOnce() -> mproc::Result<f64>) -> mproc::Result<f64> {
    if pin { crate::contention::sys::with_cpu(0, lat)? } else { lat() }
}

/// The floor under every round trip, measured like them: one shared word that each side sets in
/// turn and the other spins on (a cache line crossing each way, nothing else). Seconds per
/// round trip.
fn atomic_ping_pong(n: u64) -> mproc::Result<f64> {
    let word = mproc::RawValue::new(0u64)?;
    let mut echo = Process::spawn(|| -> mproc::Result<()> {
        echo_cpu()?;
        for i in 0..with_warm_up(n) {
            spin_for(&word, 2 * i + 1)?;
            word.store(2 * i + 2);
        }
        Ok(())
    })?;
    let mut i = 0;
    time_round_trips(n, &mut echo, || {
        word.store(2 * i + 1);
        i += 1;
        spin_for(&word, 2 * i)
    })
}

/// Spins until `word` holds `v`, yielding the core every 1,024 spins (as the queues' own waits
/// do: where both sides share a core, a hand-off then waits for a yield, not for preemption); an
/// error instead of a hang if the other side has not set it within 10 s (it died). The clock is
/// read only every 2^16 spins, so a quick hand-off reads none.
fn spin_for(word: &mproc::RawValue<u64>, v: u64) -> mproc::Result<()> {
    let mut since = None;
    let mut spins = 0u32;
    while word.load() != v {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 10) {
            std::thread::yield_now();
        }
        if spins.is_multiple_of(1 << 16) && since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(10) {
            return Err(mproc::Error::Timeout);
        }
    }
    Ok(())
}

/// Round trips a ping-pong's echo answers: the `n` timed and the untimed warm-up before them.
fn with_warm_up(n: u64) -> u64 {
    n + n / 10
}

/// The parent's side of a ping-pong: `n / 10` round trips untimed (the echo was just forked and
/// moves to its CPU; pages, caches and branch predictors warm up), then `n` timed; joins the
/// echo. Seconds per round trip.
fn time_round_trips(n: u64, echo: &mut Process, mut one: impl FnMut() -> mproc::Result<()>) -> mproc::Result<f64> {
    for _ in 0..n / 10 {
        one()?;
    }
    let t = Instant::now();
    for _ in 0..n {
        one()?;
    }
    let s = t.elapsed().as_secs_f64();
    echo.join()?;
    Ok(s / n as f64)
}

/// Runs `one(pair)` for `k` independent pairs at once (point-to-point transports); items/s.
fn pairs(n: u64, k: u64, one: impl Fn(u64) -> mproc::Result<()>) -> mproc::Result<f64> {
    let per = n / k;
    let t = Instant::now();
    let runs = (0..k).map(|_| Process::spawn(|| one(per))).collect::<mproc::Result<Vec<_>>>()?;
    for mut r in runs {
        if !r.join()?.success() {
            return Err(mproc::Error::InvalidArgument("a bench pair failed".into()));
        }
    }
    Ok((per * k) as f64 / t.elapsed().as_secs_f64())
}

fn pipe_stream(bytes: usize, n: u64, k: u64) -> mproc::Result<f64> {
    pairs(n, k, |n| {
        let (a, b) =
            Pipe::builder().capacity(stream_capacity(bytes)).max_message_bytes(bytes + 16).duplex(false).build()?;
        let mut consumer = Process::spawn(move || -> mproc::Result<()> {
            for _ in 0..n {
                std::hint::black_box(a.recv_bytes()?);
            }
            Ok(())
        })?;
        let msg = vec![7u8; bytes];
        for _ in 0..n {
            b.send_bytes(&msg)?;
        }
        consumer.join()?;
        Ok(())
    })
}

fn ipc_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (there_tx, there_rx) = ipc_channel::ipc::bytes_channel().map_err(mproc::Error::Io)?;
    let (back_tx, back_rx) = ipc_channel::ipc::bytes_channel().map_err(mproc::Error::Io)?;
    let mut echo = Process::spawn(move || -> mproc::Result<()> {
        echo_cpu()?;
        for _ in 0..with_warm_up(n) {
            let m = there_rx.recv().map_err(|e| mproc::Error::InvalidArgument(format!("{e:?}")))?;
            back_tx.send(&m).map_err(mproc::Error::Io)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    time_round_trips(n, &mut echo, || {
        there_tx.send(&msg).map_err(mproc::Error::Io)?;
        std::hint::black_box(back_rx.recv().map_err(|e| mproc::Error::InvalidArgument(format!("{e:?}")))?);
        Ok(())
    })
}

fn ipc_stream(bytes: usize, n: u64, k: u64) -> mproc::Result<f64> {
    pairs(n, k, |n| {
        let (tx, rx) = ipc_channel::ipc::bytes_channel().map_err(mproc::Error::Io)?;
        let mut consumer = Process::spawn(move || -> mproc::Result<()> {
            for _ in 0..n {
                std::hint::black_box(rx.recv().map_err(|e| mproc::Error::InvalidArgument(format!("{e:?}")))?);
            }
            Ok(())
        })?;
        let msg = vec![7u8; bytes];
        for _ in 0..n {
            tx.send(&msg).map_err(mproc::Error::Io)?;
        }
        consumer.join()?;
        Ok(())
    })
}

/// A consumer asleep in `get` (well past the spin) and a producer that puts the time it puts:
/// put → return, median µs over `samples`.
fn wake_latency(plain: bool, samples: usize) -> mproc::Result<f64> {
    let base = Instant::now();
    let q = Queue::<u64>::plain(4)?;
    let lat = RawArray::<u64>::zeroed(samples)?;
    let mut consumer = Process::spawn(|| -> mproc::Result<()> {
        for i in 0..samples {
            let sent = if plain { q.get_plain()? } else { q.get()? };
            lat.store(i, (base.elapsed().as_nanos() as u64).saturating_sub(sent));
        }
        Ok(())
    })?;
    for _ in 0..samples {
        std::thread::sleep(Duration::from_millis(2)); // the consumer is in the futex by now
        let now = base.elapsed().as_nanos() as u64;
        if plain {
            q.put_plain(now)?;
        } else {
            q.put(now)?;
        }
    }
    consumer.join()?;
    Ok(median((0..samples).map(|i| lat.load(i) as f64 / 1e3).collect()))
}

fn pipe_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (a, b) = Pipe::builder().capacity(4).max_message_bytes(bytes + 16).build()?;
    let mut echo = Process::spawn(move || -> mproc::Result<()> {
        echo_cpu()?;
        for _ in 0..with_warm_up(n) {
            let m = b.recv_bytes()?;
            b.send_bytes(&m)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    time_round_trips(n, &mut echo, || {
        a.send_bytes(&msg)?;
        std::hint::black_box(a.recv_bytes()?);
        Ok(())
    })
}

fn socket_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let mut echo = Process::spawn(move || -> mproc::Result<()> {
        echo_cpu()?;
        let mut buf = vec![0u8; bytes];
        for _ in 0..with_warm_up(n) {
            b.read_exact(&mut buf)?;
            b.write_all(&buf)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    let mut buf = vec![0u8; bytes];
    time_round_trips(n, &mut echo, || {
        a.write_all(&msg)?;
        a.read_exact(&mut buf)?;
        Ok(())
    })
}

fn socket_stream(bytes: usize, n: u64, k: u64) -> mproc::Result<f64> {
    pairs(n, k, |n| {
        let (mut a, mut b) = UnixStream::pair()?;
        let mut consumer = Process::spawn(move || -> mproc::Result<()> {
            let mut buf = vec![0u8; bytes];
            for _ in 0..n {
                b.read_exact(&mut buf)?;
            }
            Ok(())
        })?;
        let msg = vec![7u8; bytes];
        for _ in 0..n {
            a.write_all(&msg)?;
        }
        drop(a);
        consumer.join()?;
        Ok(())
    })
}

pub fn run(a: QueueArgs) -> crate::Result<()> {
    if a.repeat == 0 || a.round_trips == 0 {
        return Err(mproc::Error::InvalidArgument("--repeat and --round-trips must be at least 1".into()).into());
    }
    let sizes = crate::args::positive_list(&a.sizes, "--sizes")?;
    let par = crate::bench::parallelism()?;
    PIN.store(a.pin, std::sync::atomic::Ordering::Relaxed);
    if !a.json {
        let pin = if a.pin { ", round trips pinned to CPUs 0 and 1" } else { "" };
        println!("queue: 1 -> 1 process (2x2: 2 -> 2), median of {}{pin} (parallelism check {par:.2})", a.repeat);
        println!(
            "{:<14} {:>9} {:>14} {:>14} {:>9} {:>14} {:>9}",
            "transport", "bytes", "round trip µs", "items/s", "GB/s", "2x2 items/s", "2x2 GB/s"
        );
    }
    type Lat = fn(usize, u64) -> mproc::Result<f64>;
    type Stream = fn(usize, u64, u64) -> mproc::Result<f64>;
    let transports: [(&str, Lat, Stream); 5] = [
        ("Queue", queue_ping_pong, queue_stream),
        ("Queue plain", plain_ping_pong, plain_stream),
        ("Pipe", pipe_ping_pong, pipe_stream),
        ("socketpair", socket_ping_pong, socket_stream),
        ("ipc-channel", ipc_ping_pong, ipc_stream),
    ];
    let f = |x: f64, p: usize| if x.is_finite() { format!("{x:.p$}") } else { "-".into() };
    let emit = |row: &Row| {
        if a.json {
            println!("{}", serde_json::to_string(row).expect("plain struct serialises"));
        } else if row.bench == "queue_wake" {
            println!("{:<14} {:>9} wake after put {:.1} µs (median)", row.transport, row.bytes, row.wake_us);
        } else {
            println!(
                "{:<14} {:>9} {:>14.3} {:>14} {:>9} {:>14} {:>9}",
                row.transport,
                row.bytes,
                row.round_trip_us,
                f(row.items_per_s, 0),
                f(row.gb_per_s, 2),
                f(row.items_per_s_2x2, 0),
                f(row.gb_per_s_2x2, 2)
            );
        }
    };
    let nan = f64::NAN;
    for &bytes in &sizes {
        let n = count(a.round_trips, bytes);
        // Rounds: each takes one sample of every figure, so that a figure's samples spread over
        // the whole run. A shared machine has slow spells of a few seconds (every round trip,
        // the bare atomic floor included, then costs 3-4 times as much); bunched together, all of
        // one figure's samples could fall into one spell, and its median with them.
        let mut floor = Vec::new();
        let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; transports.len()];
        for _ in 0..a.repeat {
            floor.push(round_trip(a.pin, || atomic_ping_pong(count(a.round_trips, 8)))?);
            for ((_, lat, stream), [rt, ips, ips2]) in transports.iter().zip(&mut samples) {
                rt.push(round_trip(a.pin, || lat(bytes, n))?);
                ips.push(stream(bytes, 4 * n, 1)?);
                ips2.push(stream(bytes, 4 * n, 2)?);
            }
        }
        let row = |transport, rt: f64, ips: f64, ips2: f64| Row {
            bench: "queue",
            transport,
            bytes,
            round_trip_us: rt * 1e6,
            items_per_s: ips,
            gb_per_s: ips * bytes as f64 / 1e9,
            items_per_s_2x2: ips2,
            gb_per_s_2x2: ips2 * bytes as f64 / 1e9,
            wake_us: nan,
            pinned: a.pin,
            parallelism: par,
        };
        emit(&row(FLOOR, median(floor), nan, nan));
        for ((name, _, _), [rt, ips, ips2]) in transports.iter().zip(samples) {
            emit(&row(name, median(rt), median(ips), median(ips2)));
        }
    }
    for (name, plain) in [("Queue", false), ("Queue plain", true)] {
        let w = median((0..a.repeat).map(|_| wake_latency(plain, 50)).collect::<mproc::Result<_>>()?);
        emit(&Row {
            bench: "queue_wake",
            transport: name,
            bytes: 8,
            round_trip_us: f64::NAN,
            items_per_s: f64::NAN,
            gb_per_s: f64::NAN,
            items_per_s_2x2: f64::NAN,
            gb_per_s_2x2: f64::NAN,
            wake_us: w,
            pinned: a.pin,
            parallelism: par,
        });
    }
    Ok(())
}
