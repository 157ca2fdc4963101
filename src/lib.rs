//! ringway, the library behind the `ringway` binary: an HTTP API gateway with one
//! io_uring runtime per core and routing compiled into automata.
//!
//! Start one in-process (tests and benches do) with [`Gateway::start`]; the binary
//! is [`cli`] over the same call. The layers, top to bottom (imports run downward
//! only; `docs/architecture.md` draws them):
//!
//! | module | what it is |
//! |---|---|
//! | [`runtime`] | process start, shard threads, accept loops, control thread, listeners, watch |
//! | [`admin`], [`cli`] | the admin port; `run`, `check`, `explain` |
//! | [`downstream`] | one client connection: the HTTP/1.1 keep-alive loop |
//! | [`proxy`] | the phases of one request (`serve_request`), `decide`, policies, forward, relay |
//! | [`shard`] | a shard's state: snapshot view, pools, buffers, counters, log |
//! | [`snapshot`] | one config version compiled, and a shard's view of it |
//! | [`upstream`] | upstream ids, balancers, the connection pool, connect |
//! | [`io`] | [`io::Conn`] (TCP or TLS) and reads with deadlines |
//! | [`observe`] | metrics and the access log |
//! | [`config`] | the TOML file in, a validated `Config` out |
//! | [`http`] | the HTTP/1.1 codec: pure functions over bytes |
//! | [`civil`] | calendar arithmetic (log times, `Date`, signature dates) |
//! | [`access`] | request signatures (JD Cloud's, ringway's backend one), the nonce store |

pub mod access;
pub mod admin;
pub mod civil;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod http;
pub mod io;
pub mod observe;
pub mod proxy;
pub mod runtime;
pub mod shard;
pub mod snapshot;
pub mod traffic;
pub mod upstream;

pub use runtime::{Gateway, Handle};
