//! `mproc bench queue`: ping-pong latency and one-way throughput of mproc's `Queue` and `Pipe`
//! beside a Unix socket pair, between forked processes, measured the same way in the same run.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use mproc::{Pipe, Process, Queue};

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
}

#[derive(serde::Serialize)]
struct Row {
    bench: &'static str,
    transport: &'static str,
    bytes: usize,
    round_trip_us: f64,
    items_per_s: f64,
    gb_per_s: f64,
    parallelism: f64,
}

/// Messages for one figure: `n` capped so at most 64 MiB travel.
fn count(n: u64, bytes: usize) -> u64 {
    n.min((64 << 20) / bytes.max(1) as u64).max(100)
}

/// Serde payload: a byte vector (postcard: a length, then a copy).
fn payload(bytes: usize) -> String {
    "x".repeat(bytes)
}

fn queue_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let max = bytes + 16;
    let (there, back) = (Queue::<String>::with_max_item_bytes(4, max)?, Queue::<String>::with_max_item_bytes(4, max)?);
    let mut echo = Process::spawn(|| -> mproc::Result<()> {
        for _ in 0..n {
            let m = there.get()?;
            back.put(m)?;
        }
        Ok(())
    })?;
    let msg = payload(bytes);
    let t = Instant::now();
    for _ in 0..n {
        there.put(msg.clone())?;
        std::hint::black_box(back.get()?);
    }
    let s = t.elapsed().as_secs_f64();
    echo.join()?;
    Ok(s / n as f64)
}

fn queue_stream(bytes: usize, n: u64) -> mproc::Result<f64> {
    let q = Queue::<String>::with_max_item_bytes(256.min(((256 << 20) / (bytes + 16)).max(4)), bytes + 16)?;
    let mut consumer = Process::spawn(|| -> mproc::Result<()> {
        for _ in 0..n {
            std::hint::black_box(q.get()?);
        }
        Ok(())
    })?;
    let msg = payload(bytes);
    let t = Instant::now();
    for _ in 0..n {
        q.put(msg.clone())?;
    }
    consumer.join()?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn pipe_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (a, b) = Pipe::builder().capacity(4).max_message_bytes(bytes + 16).build()?;
    let mut echo = Process::spawn(move || -> mproc::Result<()> {
        for _ in 0..n {
            let m = b.recv_bytes()?;
            b.send_bytes(&m)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    let t = Instant::now();
    for _ in 0..n {
        a.send_bytes(&msg)?;
        std::hint::black_box(a.recv_bytes()?);
    }
    let s = t.elapsed().as_secs_f64();
    echo.join()?;
    Ok(s / n as f64)
}

fn socket_ping_pong(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let mut echo = Process::spawn(move || -> mproc::Result<()> {
        let mut buf = vec![0u8; bytes];
        for _ in 0..n {
            b.read_exact(&mut buf)?;
            b.write_all(&buf)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    let mut buf = vec![0u8; bytes];
    let t = Instant::now();
    for _ in 0..n {
        a.write_all(&msg)?;
        a.read_exact(&mut buf)?;
    }
    let s = t.elapsed().as_secs_f64();
    echo.join()?;
    Ok(s / n as f64)
}

fn socket_stream(bytes: usize, n: u64) -> mproc::Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let mut consumer = Process::spawn(move || -> mproc::Result<()> {
        let mut buf = vec![0u8; bytes];
        for _ in 0..n {
            b.read_exact(&mut buf)?;
        }
        Ok(())
    })?;
    let msg = vec![7u8; bytes];
    let t = Instant::now();
    for _ in 0..n {
        a.write_all(&msg)?;
    }
    consumer.join()?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub fn run(a: QueueArgs) -> crate::Result<()> {
    if a.repeat == 0 || a.round_trips == 0 {
        return Err(mproc::Error::InvalidArgument("--repeat and --round-trips must be at least 1".into()).into());
    }
    let sizes = crate::args::positive_list(&a.sizes, "--sizes")?;
    let par = crate::bench::parallelism()?;
    if !a.json {
        println!("queue: 1 -> 1 process, median of {} (parallelism check {par:.2})", a.repeat);
        println!("{:<14} {:>9} {:>14} {:>14} {:>9}", "transport", "bytes", "round trip µs", "items/s", "GB/s");
    }
    type Lat = fn(usize, u64) -> mproc::Result<f64>;
    let transports: [(&str, Lat, Option<Lat>); 3] = [
        ("Queue", queue_ping_pong, Some(queue_stream)),
        ("Pipe", pipe_ping_pong, None),
        ("socketpair", socket_ping_pong, Some(socket_stream)),
    ];
    for &bytes in &sizes {
        let n = count(a.round_trips, bytes);
        for (name, lat, stream) in transports {
            let rt = median((0..a.repeat).map(|_| lat(bytes, n)).collect::<mproc::Result<_>>()?);
            let ips = match stream {
                Some(f) => median((0..a.repeat).map(|_| f(bytes, 4 * n)).collect::<mproc::Result<_>>()?),
                None => f64::NAN,
            };
            let row = Row {
                bench: "queue",
                transport: name,
                bytes,
                round_trip_us: rt * 1e6,
                items_per_s: ips,
                gb_per_s: ips * bytes as f64 / 1e9,
                parallelism: par,
            };
            if a.json {
                println!("{}", serde_json::to_string(&row).expect("plain struct serialises"));
            } else {
                let f = |x: f64, p: usize| if x.is_finite() { format!("{x:.p$}") } else { "-".into() };
                println!(
                    "{:<14} {:>9} {:>14.3} {:>14} {:>9}",
                    row.transport,
                    row.bytes,
                    row.round_trip_us,
                    f(row.items_per_s, 0),
                    f(row.gb_per_s, 2)
                );
            }
        }
    }
    Ok(())
}
