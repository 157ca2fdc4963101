//! A shard's state: what one pinned monoio runtime owns — its view of the current
//! snapshot, its upstream pools, its buffer pools, its counters and access log.
//! Nothing here is shared with other shards on the request path: the `RefCell`s and
//! `Cell`s are touched by this thread only, and the counters are written only by it
//! (the admin side reads them).
//!
//! The thread, its runtime and its accept loops are `runtime/`'s; the connections it
//! serves are `downstream/`'s; both reach this state through an `Rc<Shard>`.

use crate::access::jdcloud;
use crate::access::nonce::NonceStore;
use crate::http::HeadScratch;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::{Counter, ShardStats};
use crate::snapshot::{PreparedView, ShardView, Snapshot};
use crate::upstream::ConnPool;
use ringway_router::MatchScratch;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Where a shard sends what is expensive to free (replaced snapshot views): the
/// control thread drops it there, off the request path.
pub type Retire = Sender<Box<dyn Send>>;

/// A shard's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId(pub usize);

/// Per-shard state, shared by the shard's tasks through an `Rc`.
#[derive(Debug)]
pub struct Shard {
    pub id: ShardId,
    view: RefCell<Rc<ShardView>>,
    /// Views replaced by a reload, kept until no request uses them.
    retired: RefCell<Vec<Rc<ShardView>>>,
    pub pool: RefCell<ConnPool>,
    pub match_scratch: RefCell<MatchScratch>,
    bufs: RefCell<Vec<Vec<u8>>>,
    small: RefCell<Vec<Vec<u8>>>,
    heads: RefCell<Vec<HeadScratch>>,
    pub stats: Arc<ShardStats>,
    /// This shard's access log buffer and file.
    pub access_log: RefCell<AccessLog>,
    retire: Retire,
    seq: Cell<u64>,
    prefix: u64,
    pub draining: Cell<bool>,
    /// Fired when a drain's time is up: the tunnels still open end (and are logged)
    /// before the shard stops.
    pub tunnels_stop: crate::io::Stop,
    /// Requests retrying now under a route's retry policy (the retry budget).
    pub retries_active: Cell<usize>,
    /// Idle pipes for splicing bodies between sockets.
    pub pipes: crate::io::splice::Pipes,
    /// Idle keep-alive client connections' reads (`downstream`'s parking).
    pub parked: crate::io::ParkingLot,
    /// The shard may splice: it runs the epoll driver. Under io_uring a splice is
    /// always handed to a kernel worker thread (the kernel forces it async), which
    /// costs more than the copy it saves (docs/benchmarks.md).
    pub splice: Cell<bool>,
    /// Requests being served now (drain waits for zero).
    pub in_flight: Cell<usize>,
    /// TLS handshakes in progress on this shard (bounded by `max_handshakes`).
    pub handshakes: Cell<usize>,
    /// The node's nonces of signed requests: shared by every shard (the one
    /// cross-core structure on the request path; see `access::nonce`).
    pub nonces: Arc<NonceStore>,
    pub sig_scratch: RefCell<jdcloud::Scratch>,
    /// Backend-signature nonces: a random prefix per shard and a counter.
    nonce_prefix: u64,
    nonce_seq: Cell<u64>,
    /// (snapshot version, route, method, status) → this shard's handle on the shared
    /// counter; cleared when a snapshot is installed (route ids change).
    codes: RefCell<HashMap<CodeKey, Arc<Counter>>>,
}

/// (snapshot version, route id, method label, status).
type CodeKey = (u64, u32, &'static str, u16);

/// Size of the pooled I/O buffers used for bodies and upstream responses.
pub const IO_BUF: usize = 64 * 1024;
/// Size of the pooled buffers for heads, targets and local responses.
pub const SMALL_BUF: usize = 4 * 1024;
/// Large buffers kept for reuse per shard (2 MiB).
const MAX_POOLED_BUFS: usize = 32;
/// Small buffers kept for reuse per shard (1 MiB).
const MAX_POOLED_SMALL: usize = 256;

impl Shard {
    /// A shard serving `snap`; `prefix` is the instance's request-id prefix (see
    /// [`instance_prefix`]).
    pub fn new(
        id: ShardId,
        snap: Arc<Snapshot>,
        stats: Arc<ShardStats>,
        prefix: u64,
        retire: Retire,
        nonces: Arc<NonceStore>,
    ) -> Shard {
        let view = ShardView::new(PreparedView::new(snap, &stats), id.0 as u64 + 1);
        let mut access_log = AccessLog::new(&view.snap.config.log.access, stats.clone(), id.0);
        access_log.set_fields(view.snap.config.log.fields);
        Shard {
            id,
            view: RefCell::new(Rc::new(view)),
            retired: RefCell::new(Vec::new()),
            pool: RefCell::new(ConnPool::default()),
            match_scratch: RefCell::new(MatchScratch::default()),
            bufs: RefCell::new(Vec::new()),
            small: RefCell::new(Vec::new()),
            heads: RefCell::new(Vec::new()),
            stats,
            access_log: RefCell::new(access_log),
            retire,
            seq: Cell::new(0),
            prefix,
            draining: Cell::new(false),
            tunnels_stop: crate::io::Stop::default(),
            retries_active: Cell::new(0),
            pipes: Default::default(),
            parked: Default::default(),
            splice: Cell::new(false),
            in_flight: Cell::new(0),
            handshakes: Cell::new(0),
            nonces,
            sig_scratch: RefCell::default(),
            nonce_prefix: {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::hash::RandomState::new().build_hasher();
                h.write_usize(id.0);
                h.finish()
            },
            nonce_seq: Cell::new(0),
            codes: RefCell::default(),
        }
    }

    /// Counts a response of `route` (in the current view) to `method` with `status`.
    pub fn count_code(
        &self,
        view: &ShardView,
        route: ringway_router::RouteId,
        method: &'static str,
        status: u16,
    ) {
        let key = (view.snap.version, route.0, method, status);
        if let Some(c) = self.codes.borrow().get(&key) {
            c.inc();
            return;
        }
        let Some(r) = view.snap.config.routes.get(route.index()) else {
            return;
        };
        let c = self.stats.route_code(&r.group, &r.name, method, status);
        c.inc();
        self.codes.borrow_mut().insert(key, c);
    }

    /// A nonce for a backend signature: unique per process (shard prefix and
    /// counter), unpredictable across runs (the prefix is random).
    pub fn backend_nonce(&self) -> [u8; 16] {
        let seq = self.nonce_seq.get() + 1;
        self.nonce_seq.set(seq);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.nonce_prefix.to_be_bytes());
        out[8..].copy_from_slice(&seq.to_be_bytes());
        out
    }

    /// The current snapshot view. A request keeps the `Rc` it started with.
    #[inline]
    pub fn view(&self) -> Rc<ShardView> {
        self.view.borrow().clone()
    }

    /// Switches to a new snapshot, prepared off this thread; requests in flight
    /// finish on the old one.
    pub fn install(&self, prepared: PreparedView) {
        let view = ShardView::new(prepared, self.id.0 as u64 + self.seq.get());
        self.stats.set_version(view.snap.version);
        let mut log = self.access_log.borrow_mut();
        log.set_target(&view.snap.config.log.access);
        log.set_fields(view.snap.config.log.fields);
        drop(log);
        view.adopt_leases(&self.view.borrow());
        let old = std::mem::replace(&mut *self.view.borrow_mut(), Rc::new(view));
        self.codes.borrow_mut().clear();
        self.retired.borrow_mut().push(old);
    }

    /// Hands the retired views no request uses any more to the control thread, which
    /// frees them there: dropping a 10,000-rule router is tens of thousands of frees
    /// that would otherwise stall this shard's requests.
    pub fn release_retired(&self) {
        let mut retired = self.retired.borrow_mut();
        for rc in std::mem::take(&mut *retired) {
            match Rc::try_unwrap(rc) {
                Ok(view) => {
                    // Without a control thread (it has exited) the view is dropped here.
                    let _ = self.retire.send(Box::new(view));
                }
                Err(rc) => retired.push(rc),
            }
        }
    }

    /// A cleared buffer of at least [`IO_BUF`] capacity.
    #[inline]
    pub fn take_buf(&self) -> Vec<u8> {
        self.bufs
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(IO_BUF))
    }

    #[inline]
    pub fn give_buf(&self, mut b: Vec<u8>) {
        if b.capacity() >= IO_BUF && b.capacity() <= 4 * IO_BUF {
            let mut bufs = self.bufs.borrow_mut();
            if bufs.len() < MAX_POOLED_BUFS {
                b.clear();
                bufs.push(b);
            }
        }
    }

    /// A cleared buffer of at least [`SMALL_BUF`] capacity, for heads and targets.
    #[inline]
    pub fn take_small(&self) -> Vec<u8> {
        self.small
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(SMALL_BUF))
    }

    #[inline]
    pub fn give_small(&self, mut b: Vec<u8>) {
        if b.capacity() >= SMALL_BUF && b.capacity() <= IO_BUF {
            let mut small = self.small.borrow_mut();
            if small.len() < MAX_POOLED_SMALL {
                b.clear();
                small.push(b);
            }
        }
    }

    #[inline]
    pub fn take_head_scratch(&self) -> HeadScratch {
        self.heads.borrow_mut().pop().unwrap_or_default()
    }

    #[inline]
    pub fn give_head_scratch(&self, h: HeadScratch) {
        let mut heads = self.heads.borrow_mut();
        if heads.len() < MAX_POOLED_BUFS {
            heads.push(h);
        }
    }

    /// A new request id: instance prefix, shard, sequence, in hex
    /// (`5f3a9c01d2e4-0-1a`).
    pub fn next_request_id(&self) -> RequestId {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let mut id = RequestId {
            buf: [0; RequestId::MAX],
            len: 0,
        };
        id.push_hex(self.prefix, 12);
        id.push(b'-');
        id.push_hex(self.id.0 as u64, 1);
        id.push(b'-');
        id.push_hex(n, 1);
        id
    }

    /// The request's id: the client's `x-request-id` when it sent a usable one (see
    /// [`crate::http::client_request_id`]), else a new one.
    pub fn request_id(&self, client: Option<&[u8]>) -> RequestId {
        match client {
            Some(v) if v.len() <= RequestId::MAX => {
                let mut id = RequestId {
                    buf: [0; RequestId::MAX],
                    len: v.len(),
                };
                id.buf[..v.len()].copy_from_slice(v);
                id
            }
            _ => self.next_request_id(),
        }
    }
}

/// A request-id prefix for this instance, unique across restarts and hosts (48
/// bits). The process id alone repeats (every container's gateway is PID 1), and so
/// does a start time on clocks that agree; the standard library's per-process
/// random hash keys (from the OS's random source) make the difference.
pub fn instance_prefix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish() & 0xffff_ffff_ffff
}

/// A request id, on the stack: ours, or the client's when it sent a usable one.
#[derive(Clone, Copy, Debug)]
pub struct RequestId {
    buf: [u8; RequestId::MAX],
    len: usize,
}

impl RequestId {
    /// The longest id kept from a client (longer ones are replaced by ours).
    pub const MAX: usize = 128;

    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push_hex(&mut self, v: u64, min_digits: usize) {
        let digits = ((64 - v.leading_zeros() as usize).div_ceil(4)).max(min_digits);
        for i in (0..digits).rev() {
            self.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize]);
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
