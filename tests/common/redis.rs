//! The Redis server the tests use: `MPROC_REDIS_URL` (make test starts a private one). Without
//! it the Redis tests are skipped — except under `CI=true`, where that is a failure.

pub fn url() -> Option<String> {
    match std::env::var("MPROC_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but MPROC_REDIS_URL is not set: run the tests with `make test`, which starts redis-server")
        }
        _ => {
            eprintln!("skipping: MPROC_REDIS_URL is not set (make test starts a private redis-server)");
            None
        }
    }
}
