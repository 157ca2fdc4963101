//! `ringway-backend`: the fixture upstream for ringway's load tests.
//!
//! A deliberately boring HTTP/1.1 origin that must never be the bottleneck
//! of a proxy benchmark: thread-per-core on monoio (io_uring, falling back to
//! epoll), one SO_REUSEPORT listener per thread, keep-alive, pipelining, a
//! preallocated response body, request bodies (Content-Length or chunked)
//! read to the end and discarded or echoed.
//!
//! ```text
//! ringway-backend --listen 127.0.0.1:0 --threads 1 --size 64
//! listening on 127.0.0.1:41234
//! ```
//!
//! The first stdout line is always `listening on ADDR`, printed once every
//! thread is accepting, so a test can bind port 0 and read the real port.
//! Per-request overrides by path: `/size/<n>`, `/status/<code>`, `/echo`.
//! Every response carries `x-backend-port` (which backend answered) and
//! `x-backend-conn` (a process-unique connection serial, to count
//! connections). SIGTERM or SIGINT exits with status 0.

mod args;
mod conn;
mod framing;
mod request;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;

use monoio::net::{ListenerOpts, TcpListener};

use args::Options;
use conn::ShardInfo;
use request::Defaults;

/// Size of the shared filler buffer; bigger bodies are written in pieces of it.
const MIN_FILLER: usize = 1 << 20;
/// Listen backlog per thread: `newconn` runs open thousands of connections a second.
const BACKLOG: i32 = 4096;

fn main() {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(if msg == args::USAGE { 0 } else { 2 });
        }
    };
    // Workers inherit this mask, so SIGTERM/SIGINT reach only sigwait below.
    let signals = block_termination_signals();
    let filler: &'static [u8] = Box::leak(vec![b'x'; opts.size.max(MIN_FILLER)].into_boxed_slice());

    // Thread 0 binds first (perhaps port 0); the rest bind the port it got.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr, String>>();
    let mut addr = opts.listen;
    for index in 0..opts.threads {
        let (opts, tx) = (opts.clone(), ready_tx.clone());
        std::thread::Builder::new()
            .name(format!("backend-{index}"))
            .spawn(move || run_shard(index, addr, opts, filler, tx))
            .expect("spawn worker thread");
        match ready_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => {
                eprintln!("ringway-backend: {e}");
                std::process::exit(1);
            }
            Err(_) => std::process::exit(1),
        }
    }
    println!("listening on {addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    wait_for(&signals);
    std::process::exit(0);
}

fn run_shard(
    index: usize,
    addr: SocketAddr,
    opts: Options,
    filler: &'static [u8],
    ready: mpsc::Sender<Result<SocketAddr, String>>,
) {
    let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let listener_opts = ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(BACKLOG);
        let listener = match TcpListener::bind_with_config(addr, &listener_opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("bind {addr}: {e}")));
                return;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        let shard = Rc::new(ShardInfo {
            defaults: Defaults {
                size: opts.size,
                echo: opts.echo,
            },
            delay: opts.delay,
            port_header: format!("x-backend-port: {}\r\n", bound.port()).into_bytes(),
            filler,
        });
        let _ = ready.send(Ok(bound));
        // Serials are unique across threads without sharing a counter:
        // thread i hands out i+1, i+1+T, i+1+2T, …
        let mut serial = index as u64 + 1;
        let stride = opts.threads as u64;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(conn::serve(stream, serial, shard.clone()));
                    serial += stride;
                }
                // EMFILE and friends: back off briefly instead of spinning.
                Err(_) => monoio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
}

fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises before use;
    // the pointers passed are to live locals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(set: &libc::sigset_t) {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by block_termination_signals and `sig` is
    // a live local; sigwait only reads the former and writes the latter.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
}
