//! The context every phase of one request works on: [`Exchange`], the client side
//! of it ([`ClientConn`]), and what serving it came to ([`Outcome`]).

use crate::http::{
    find_header, is_usable_request_id, BodyFraming, HeadScratch, HeaderSpan, RequestHead, Version,
};
use crate::io::Conn;
use crate::observe::access_log::{Line, RequestFields};
use crate::shard::{RequestId, Shard};
use crate::snapshot::ShardView;
use crate::upstream::UpstreamId;
use ringway_router::{EnvId, RouteId};
use std::time::Instant;

/// The client side of one connection, as the phases see it: the stream and the
/// bytes read from it. `downstream/` owns the connection loop and lends this out
/// for each request.
#[derive(Debug)]
pub struct ClientConn {
    pub io: Conn,
    /// Bytes read and not yet consumed start at `pos`.
    pub buf: Vec<u8>,
    pub pos: usize,
    /// The client's address as text, for `X-Forwarded-For` and the log.
    pub peer_ip: Vec<u8>,
    /// The verified client certificate (mTLS listeners), as the value of
    /// `x-forwarded-client-cert` — and, later, for routing and auth.
    pub client_cert: Option<Box<[u8]>>,
}

/// What one request's head says, copied out before the body is read: the head's
/// bytes do not outlive a streamed body, these facts do.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts {
    pub framing: BodyFraming,
    /// The method is HEAD: the response has no body whatever it says.
    pub head_only: bool,
    /// The method may be repeated (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// The client spoke HTTP/1.0: no interim responses, no chunked bodies.
    pub http10: bool,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The client sent `TE: trailers`: a response's trailers are relayed to it
    /// (else they are dropped).
    pub accepts_trailers: bool,
    /// The method as a metrics label ([`crate::observe::metrics::method_label`]).
    pub method: &'static str,
}

impl RequestFacts {
    pub fn of(head: &RequestHead, buf: &[u8], headers: &[HeaderSpan]) -> RequestFacts {
        let method = head.method.slice(buf);
        let accepts_trailers = headers.iter().any(|h| {
            h.name.slice(buf).eq_ignore_ascii_case(b"te")
                && h.value.slice(buf).split(|&b| b == b',').any(|t| {
                    t.trim_ascii()
                        .split(|&b| b == b';')
                        .next()
                        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
                })
        });
        RequestFacts {
            framing: head.framing,
            head_only: method == b"HEAD",
            idempotent: is_idempotent(method),
            http10: head.version == Version::Http10,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            accepts_trailers,
            method: crate::observe::metrics::method_label(method),
        }
    }

    pub fn has_body(&self) -> bool {
        self.framing != BodyFraming::None
    }
}

/// True for methods that may be retried on a fresh connection (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// What was sent for the request, as far as the log needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Response body bytes written to the client.
    pub body_bytes: u64,
    /// When the upstream's (final) response head arrived.
    pub upstream_head: Option<Instant>,
    /// An upgraded connection: bytes from the client through the tunnel, and how
    /// the tunnel ended (those to the client are in `body_bytes`).
    pub tunnel: Option<(u64, crate::io::tunnel::End)>,
    /// The upstream failed mid-body (a read failed or timed out, or its framing
    /// was bad): the client got a cut response, and the upstream's health counts it.
    pub upstream_cut: bool,
}

/// One request being served: the shard and snapshot it runs on, the client, the
/// parsed head, and what the phases have decided so far.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub shard: &'a Shard,
    pub view: &'a ShardView,
    pub client: &'a mut ClientConn,
    /// The head; its spans index `client.buf` until the body is read.
    pub head: RequestHead,
    /// The head's field lines (spans into `client.buf`, like `head`).
    pub fields: &'a HeadScratch,
    pub facts: RequestFacts,
    pub id: RequestId,
    /// The client's `x-request-id` is present but not usable: ours replaces it.
    pub replace_client_id: bool,
    pub started: Instant,
    pub log_line: Option<Line>,
    /// The winning rule, once decided.
    pub route: Option<RouteId>,
    /// The environment served, once decided.
    pub env: Option<EnvId>,
    /// The upstream picked, once picked.
    pub upstream: Option<UpstreamId>,
    /// How much of the request body has been read off the connection.
    pub body: BodyRead,
    /// `100 Continue` was sent to the client (once, whatever the attempts).
    pub continue_sent: bool,
    pub sent: Sent,
    /// Who is calling, once authorization has said (groups with `auth`).
    pub caller: Option<Caller>,
    /// The client's address as the limits count it (routes with a per-address
    /// limit only; see `policy::limits::prepare`).
    pub client_addr: Option<std::net::IpAddr>,
    /// `headers = "always"`: (limit, remaining, nanoseconds until one more) of each
    /// limit that admitted.
    pub limit_remaining: Vec<(u16, u64, u64)>,
    /// The limit that refused the request, for the log.
    pub limited: Option<crate::traffic::Limited>,
    /// The `Upgrade` protocols forwarded (those the route allows), once decided.
    pub upgrade: Option<Vec<u8>>,
    /// Retries of the route's policy so far (the stale pooled connection's one not
    /// counted).
    pub retries: usize,
    /// The request holds a share of the shard's retry budget.
    pub retrying: bool,
    /// The hash of the request's key, for a consistent-hash group (`proxy/pick.rs`).
    pub hash_key: Option<u64>,
}

/// An authenticated caller: an index into the snapshot's `[access]` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `access.subscription_keys[i]`.
    Key(usize),
    /// `access.key_pairs[i]`.
    Pair(usize),
}

impl Caller {
    /// The caller's position in [`crate::snapshot::Snapshot::caller_keys`].
    pub fn index(&self, access: &crate::config::access::AccessConfig) -> usize {
        match *self {
            Caller::Key(i) => i,
            Caller::Pair(i) => access.subscription_keys.len() + i,
        }
    }

    /// The caller's id as logs and metrics show it (never a secret).
    pub fn id<'c>(&self, access: &'c crate::config::access::AccessConfig) -> &'c str {
        match *self {
            Caller::Key(i) => access.subscription_keys.get(i).map_or("", |k| k.id.as_str()),
            Caller::Pair(i) => access.key_pairs.get(i).map_or("", |k| k.access_key.as_str()),
        }
    }
}

impl<'a> Exchange<'a> {
    /// Starts serving the request whose `head` (and `fields`) were just parsed from
    /// `client.buf`: takes the client's `x-request-id` or mints one, and begins the
    /// access log line while the head's bytes are still there.
    pub fn new(
        shard: &'a Shard,
        view: &'a ShardView,
        client: &'a mut ClientConn,
        head: RequestHead,
        fields: &'a HeadScratch,
    ) -> Exchange<'a> {
        let started = Instant::now();
        let buf = &client.buf[..];
        let facts = RequestFacts::of(&head, buf, fields.headers());
        let client_id = find_header(buf, fields.headers(), b"x-request-id");
        let usable = client_id.filter(|v| is_usable_request_id(v));
        let id = shard.request_id(usable);
        let replace_client_id = client_id.is_some() && usable.is_none();
        let mut log = shard.access_log.borrow_mut();
        let log_line = if log.is_on() {
            let field = |name: &[u8]| find_header(buf, fields.headers(), name);
            log.begin(&RequestFields {
                id: id.as_bytes(),
                client: &client.peer_ip,
                method: Some(head.method.slice(buf)),
                path: Some(head.path.slice(buf)),
                query: head.query.map(|q| q.slice(buf)),
                host: head.host.map(|h| h.slice(buf)),
                protocol: Some(if facts.http10 { "HTTP/1.0" } else { "HTTP/1.1" }),
                user_agent: field(b"user-agent"),
                referer: field(b"referer"),
                request_bytes: match facts.framing {
                    BodyFraming::None => Some(0),
                    BodyFraming::Length(n) => Some(n),
                    BodyFraming::Chunked => None,
                },
            })
        } else {
            None
        };
        drop(log);
        // The body (or the next pipelined request) starts after the head.
        client.pos = head.head_len;
        Exchange {
            shard,
            view,
            client,
            head,
            fields,
            facts,
            id,
            replace_client_id,
            started,
            log_line,
            route: None,
            env: None,
            upstream: None,
            body: if facts.has_body() {
                BodyRead::Unread
            } else {
                BodyRead::Done
            },
            continue_sent: false,
            sent: Sent::default(),
            caller: None,
            client_addr: None,
            limit_remaining: Vec::new(),
            limited: None,
            upgrade: None,
            retries: 0,
            retrying: false,
            hash_key: None,
        }
    }
}

/// How much of the request body has been read off the client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRead {
    /// None of it: the body (if any) starts at the end of the head in `client.buf`.
    Unread,
    /// Some of it: where the rest starts is lost with the buffer, so the
    /// connection cannot carry another request.
    Partial,
    /// All of it (or there was none): `client.pos` is at the next request.
    Done,
}

/// What becomes of the client connection after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close: the client asked to, the response is delimited by the close, a write
    /// failed, or the request's framing is in doubt.
    Close,
}

/// How a request ended: the status the client got (or the log records) and what
/// becomes of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub next: Next,
}

impl Outcome {
    pub fn new(status: u16, keep_alive: bool) -> Outcome {
        Outcome {
            status,
            next: if keep_alive { Next::KeepAlive } else { Next::Close },
        }
    }

    pub fn keeps_alive(&self) -> bool {
        self.next == Next::KeepAlive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_index_the_snapshots_keys_subscription_keys_first() {
        let config = crate::config::parse(
            r#"
[[access.subscription_keys]]
id = "a"
key = "ka"
groups = ["g"]
[[access.subscription_keys]]
id = "b"
key = "kb"
groups = ["g"]
[[access.key_pairs]]
access_key = "AK"
secret_key = "s"
groups = ["g"]
[[groups]]
name = "g"
auth = "subscription_key"
[[groups.routes]]
name = "r"
path = { prefix = "/" }
mock = { body = "r" }
"#,
            "t.toml",
        )
        .unwrap();
        let a = &config.access;
        assert_eq!((Caller::Key(1).index(a), Caller::Pair(0).index(a)), (1, 2));
        assert_eq!((Caller::Key(1).id(a), Caller::Pair(0).id(a)), ("b", "AK"));
        // The snapshot hashes them in that order.
        let mut snap = crate::snapshot::Snapshot::build(config.clone(), 1).unwrap();
        let mut config_with_limit = config;
        config_with_limit
            .traffic
            .limits
            .push(crate::config::traffic::LimitDef::new(
                "per-key",
                crate::config::traffic::By::Key,
                1,
                crate::config::traffic::Unit::Second,
                0,
            ));
        snap.config = config_with_limit;
        snap.bind_limits(&crate::traffic::Registry::default());
        let key = |id| crate::traffic::Ident::Caller(id).key();
        assert_eq!(snap.caller_keys, vec![key("a"), key("b"), key("AK")]);
    }
}
