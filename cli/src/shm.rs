use mproc::Segment;

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
    /// List named segments left by mproc processes (live and dead).
    List,
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
        Command::List => {
            for e in std::fs::read_dir("/dev/shm")?.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("mproc-") {
                    println!("{n}");
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
