//! Command-line options. A hand-rolled parser: six flags do not need clap.

use std::net::SocketAddr;
use std::time::Duration;

/// What the user asked for on the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--listen ADDR` (default `127.0.0.1:0`); port 0 picks a free port,
    /// printed as `listening on ADDR` on the first stdout line.
    pub listen: SocketAddr,
    /// `--threads N` (default 1): one monoio runtime and one SO_REUSEPORT
    /// listener per thread.
    pub threads: usize,
    /// `--size BYTES` (default 64): the default response body size.
    pub size: usize,
    /// `--delay-ms N` (default 0): wait this long before each response.
    pub delay: Duration,
    /// `--echo`: answer every request with its own body.
    pub echo: bool,
}

pub const USAGE: &str = "\
usage: ringway-backend [--listen ADDR] [--threads N] [--size BYTES] [--delay-ms N] [--echo]

  --listen ADDR    address to bind (default 127.0.0.1:0; prints `listening on ADDR`)
  --threads N      worker threads, each with its own SO_REUSEPORT listener (default 1)
  --size BYTES     default response body size (default 64)
  --delay-ms N     delay every response by N milliseconds (default 0)
  --echo           respond with the request body (the path /echo always does)

Per-request overrides by path: /size/<n> returns n bytes, /status/<code> returns
that status, /echo echoes the request body.";

impl Options {
    /// Parses `args` (without the program name). `Err` carries a message for
    /// the user; `--help` comes back as `Err(USAGE)`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut opts = Options {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            threads: 1,
            size: 64,
            delay: Duration::ZERO,
            echo: false,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.clone(), None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs {what}"))
            };
            match name.as_str() {
                "--listen" => {
                    let v = value("an address")?;
                    opts.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
                }
                "--threads" => opts.threads = number(&name, &value("a count")?)?.max(1),
                "--size" => opts.size = number(&name, &value("a byte count")?)?,
                "--delay-ms" => {
                    opts.delay = Duration::from_millis(number(&name, &value("milliseconds")?)? as u64)
                }
                "--echo" => opts.echo = true,
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
            }
        }
        Ok(opts)
    }
}

fn number(flag: &str, v: &str) -> Result<usize, String> {
    v.parse().map_err(|e| format!("{flag} {v}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults() {
        let o = parse("").unwrap();
        assert_eq!(o.listen.to_string(), "127.0.0.1:0");
        assert_eq!((o.threads, o.size, o.echo), (1, 64, false));
        assert_eq!(o.delay, Duration::ZERO);
    }

    #[test]
    fn all_flags_both_spellings() {
        let o = parse("--listen=127.0.0.1:19000 --threads 2 --size=1024 --delay-ms 5 --echo").unwrap();
        assert_eq!(o.listen.port(), 19000);
        assert_eq!((o.threads, o.size, o.echo), (2, 1024, true));
        assert_eq!(o.delay, Duration::from_millis(5));
    }

    #[test]
    fn rejects_unknown_and_missing_values() {
        assert!(parse("--bogus").is_err());
        assert!(parse("--size").is_err());
        assert!(parse("--size abc").is_err());
    }
}
