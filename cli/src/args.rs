//! Parsing the flag values the subcommands share: counts, lists of names, lists of numbers.

/// Parses a count such as `100000000`, `1e8` or `2.5e6`.
pub fn parse_count(s: &str, what: &str) -> mproc::Result<u64> {
    let bad = || mproc::Error::InvalidArgument(format!("{what}: not a positive whole number: {s:?}"));
    if let Ok(n) = s.parse::<u64>() {
        return if n > 0 { Ok(n) } else { Err(bad()) };
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    if f >= 1.0 && f <= u64::MAX as f64 && f.fract() == 0.0 { Ok(f as u64) } else { Err(bad()) }
}

/// Parses a comma-separated list of positive numbers (`1,2,4`) for the flag `flag`.
pub fn positive_list(s: &str, flag: &str) -> mproc::Result<Vec<usize>> {
    s.split(',')
        .map(|x| match x.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(mproc::Error::InvalidArgument(format!("{flag}: not a positive number: {x:?}"))),
        })
        .collect()
}

/// Parses a comma-separated list of names (`serial,threads`) into their enum values.
pub fn parse_list<T: std::str::FromStr<Err = mproc::Error>>(s: &str) -> mproc::Result<Vec<T>> {
    s.split(',').map(|x| x.trim().parse()).collect()
}
