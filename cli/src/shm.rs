use std::io::Read;
use std::time::Duration;

use mproc::{NamedArena, Segment};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print a named segment's bytes from OFFSET up to the first NUL (as text).
    Read {
        /// The segment's name (as `Segment::name` gives it).
        name: String,
        /// Byte offset to start at.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// List named segments left by mproc processes (live and dead), and the objects inside each
    /// named arena; with NAME, only that arena's objects.
    List {
        /// One named arena's name.
        name: Option<String>,
    },
    /// Remove named segments whose creating process no longer exists.
    Clean,
}

pub fn run(c: Command) -> crate::Result<()> {
    match c {
        Command::Read { name, offset } => {
            let seg = Segment::open(&name)?;
            if offset >= seg.len() {
                return Err(mproc::Error::InvalidArgument(format!(
                    "offset {offset} is past the end of {name} ({} bytes)",
                    seg.len()
                ))
                .into());
            }
            // SAFETY: a read-only snapshot for display; a concurrent writer can only make the
            // text garbled, and the bytes are copied out at once.
            let bytes = unsafe { seg.as_bytes() }[offset..].to_vec();
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            println!("{}", String::from_utf8_lossy(&bytes[..end]));
            Ok(())
        }
        Command::List { name: Some(name) } => {
            let arena = NamedArena::open_timeout(&name, Duration::from_millis(100))?;
            print_objects(&arena)
        }
        Command::List { name: None } => {
            let mut names: Vec<String> = std::fs::read_dir("/dev/shm")?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let arena = is_named_arena(&n);
                if !n.starts_with("mproc-") && !arena {
                    continue;
                }
                println!("{n}");
                if arena {
                    match NamedArena::open_timeout(&n, Duration::from_millis(100)) {
                        Ok(a) => print_objects(&a)?,
                        Err(e) => println!("    (cannot list its objects: {e})"),
                    }
                }
            }
            Ok(())
        }
        Command::Clean => {
            for n in Segment::cleanup_stale()? {
                println!("removed {n}");
            }
            Ok(())
        }
    }
}

/// Whether the file's first bytes are a named arena's magic (read, not mapped).
fn is_named_arena(name: &str) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(format!("/dev/shm/{name}")).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && u64::from_le_bytes(magic) == NamedArena::MAGIC
}

fn print_objects(arena: &NamedArena) -> crate::Result<()> {
    let objects = arena.objects()?;
    println!(
        "    named arena, {} bytes, created by pid {}, {} object{}",
        arena.len(),
        arena.creator_pid(),
        objects.len(),
        if objects.len() == 1 { "" } else { "s" }
    );
    if objects.is_empty() {
        return Ok(());
    }
    let types: Vec<String> = objects.iter().map(|o| o.type_label()).collect();
    let nw = objects.iter().map(|o| o.name.len()).max().unwrap_or(0).max(4);
    let tw = types.iter().map(|t| t.len()).max().unwrap_or(0).max(4);
    println!("    {:nw$}  {:tw$}  {:>10}  {:>10}", "NAME", "TYPE", "OFFSET", "SIZE");
    for (o, t) in objects.iter().zip(&types) {
        println!("    {:nw$}  {:tw$}  {:>10}  {:>10}", o.name, t, o.offset, o.size);
    }
    Ok(())
}
