//! [`ProxyError`]: why a proxied request failed, whom to blame, whether another
//! attempt is safe — and, derived from those in one place, what the client is told.
//!
//! Modelled on pingora's `pingora-error`: the *source* says where the fault came
//! from (for logs and metrics), the *retry* rule says whether the request may be
//! sent again on a fresh connection. [`ProxyError::answer`] is the only place a
//! failure becomes a status.

use crate::upstream::ConnectError;

/// Where a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client: it went away, stalled, or sent a body that is not well framed.
    Client,
    /// The upstream: it refused, reset, timed out or answered something invalid.
    Upstream,
    /// ringway itself: nothing to send the request to.
    Ringway,
}

/// Whether a failed attempt may be repeated on a fresh upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Never: something of the request may have been acted on, or the fault is
    /// not the connection's.
    Never,
    /// Only when the failed connection was a reused (pooled) one: it was stale,
    /// closed by the upstream while idle, and nothing of the request was acted on.
    IfReused,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ClientGone,
    BadRequestBody(&'static str),
    Connect(ConnectError),
    ClosedBeforeResponse,
    ResponseTimeout,
    BadResponseHead(&'static str),
    SwitchedProtocols,
    BodyWriteFailed,
    NoUpstream,
    /// The upstream answered this status (502, 503, 504), dropped for a retry.
    RetriedStatus(u16),
    /// Every member of this endpoint group is down, and the group refuses.
    AllDown(ringway_router::EndpointId),
    BodyTooLarge,
    BodyTimeout(&'static str),
    Internal(&'static str),
}

/// A failed proxy attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyError {
    kind: Kind,
    retry: Retry,
}

/// What the client gets for a [`ProxyError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A local response with this status and a body naming the problem. `close`:
    /// the connection closes after it (the request's framing is in doubt).
    Respond {
        status: u16,
        problem: &'static str,
        close: bool,
    },
    /// Nothing can be said: the connection is closed. `status` is what the access
    /// log records.
    Close { status: u16 },
}

impl ProxyError {
    const fn new(kind: Kind) -> ProxyError {
        ProxyError {
            kind,
            retry: Retry::Never,
        }
    }

    /// The client closed, reset or stalled mid-request.
    pub const fn client_gone() -> ProxyError {
        ProxyError::new(Kind::ClientGone)
    }

    /// The request body's framing is malformed (`why` says how).
    pub const fn bad_request_body(why: &'static str) -> ProxyError {
        ProxyError::new(Kind::BadRequestBody(why))
    }

    /// No upstream connection could be made.
    pub const fn connect(e: ConnectError) -> ProxyError {
        ProxyError::new(Kind::Connect(e))
    }

    /// The upstream closed or reset the connection before any response byte.
    /// `retry` says whether the request may be sent again (see [`Retry`]).
    pub const fn closed_before_response(retry: Retry) -> ProxyError {
        ProxyError {
            kind: Kind::ClosedBeforeResponse,
            retry,
        }
    }

    /// No response head within the response timeout.
    pub const fn response_timeout() -> ProxyError {
        ProxyError::new(Kind::ResponseTimeout)
    }

    /// The response head is malformed (`why` says how).
    pub const fn bad_response_head(why: &'static str) -> ProxyError {
        ProxyError::new(Kind::BadResponseHead(why))
    }

    /// The upstream answered 101 to a request that forwarded no upgrade.
    pub const fn switched_protocols() -> ProxyError {
        ProxyError::new(Kind::SwitchedProtocols)
    }

    /// Writing the request body upstream failed.
    pub const fn body_write_failed() -> ProxyError {
        ProxyError::new(Kind::BodyWriteFailed)
    }

    /// The request body is over its limit (`max_body_bytes`).
    pub const fn body_too_large() -> ProxyError {
        ProxyError::new(Kind::BodyTooLarge)
    }

    /// The request body did not arrive in time, or too slowly (`why` says which).
    pub const fn body_timeout(why: &'static str) -> ProxyError {
        ProxyError::new(Kind::BodyTimeout(why))
    }

    /// ringway could not do its part (a bug, answered rather than hidden).
    pub const fn internal(why: &'static str) -> ProxyError {
        ProxyError::new(Kind::Internal(why))
    }

    /// The route's endpoint has no member to send to.
    pub const fn no_upstream() -> ProxyError {
        ProxyError::new(Kind::NoUpstream)
    }

    /// Every member of endpoint group `e` is down (ejected or failing its checks).
    pub const fn all_down(e: ringway_router::EndpointId) -> ProxyError {
        ProxyError::new(Kind::AllDown(e))
    }

    /// The upstream's answer `status`, dropped unread because the request goes again.
    pub const fn status_dropped(status: u16) -> ProxyError {
        ProxyError::new(Kind::RetriedStatus(status))
    }

    /// The status of an answer dropped for a retry.
    pub fn retried_status(&self) -> Option<u16> {
        match self.kind {
            Kind::RetriedStatus(s) => Some(s),
            _ => None,
        }
    }

    /// The group whose members are all down, for the answer's text.
    pub fn all_down_group(&self) -> Option<ringway_router::EndpointId> {
        match self.kind {
            Kind::AllDown(e) => Some(e),
            _ => None,
        }
    }

    /// Whom to blame.
    pub fn source(&self) -> Source {
        match self.kind {
            Kind::ClientGone | Kind::BadRequestBody(_) | Kind::BodyTooLarge | Kind::BodyTimeout(_) => {
                Source::Client
            }
            Kind::NoUpstream | Kind::AllDown(_) | Kind::Internal(_) => Source::Ringway,
            Kind::Connect(_)
            | Kind::ClosedBeforeResponse
            | Kind::ResponseTimeout
            | Kind::BadResponseHead(_)
            | Kind::SwitchedProtocols
            | Kind::RetriedStatus(_)
            | Kind::BodyWriteFailed => Source::Upstream,
        }
    }

    /// Whether another attempt on a fresh connection is safe, given whether the
    /// failed connection was a reused one.
    pub fn is_retry_safe(&self, reused: bool) -> bool {
        match self.retry {
            Retry::Never => false,
            Retry::IfReused => reused,
        }
    }

    /// The upstream closed before any response byte.
    pub fn is_closed_before_response(&self) -> bool {
        matches!(self.kind, Kind::ClosedBeforeResponse)
    }

    /// The connect failed (counted per upstream as a connect error).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect(_))
    }

    /// No response head in time (counted per upstream as a timeout; a connect
    /// timeout counts as a connect error).
    pub fn is_response_timeout(&self) -> bool {
        matches!(self.kind, Kind::ResponseTimeout)
    }

    /// What the client is told: the one place a failure becomes a status.
    pub fn answer(&self) -> Answer {
        let respond = |status, problem| Answer::Respond {
            status,
            problem,
            close: false,
        };
        match self.kind {
            // The body is half-read: framing is in doubt; close without an answer
            // the client could mistake for the end of a body.
            Kind::ClientGone => Answer::Close { status: 400 },
            Kind::BadRequestBody(why) => Answer::Respond {
                status: 400,
                problem: why,
                close: true,
            },
            Kind::Connect(ConnectError::Refused) => respond(502, "upstream refused the connection"),
            Kind::Connect(ConnectError::Failed) => respond(502, "upstream connection failed"),
            Kind::Connect(ConnectError::TimedOut) => respond(504, "upstream connect timed out"),
            Kind::Connect(ConnectError::Verify(v)) => respond(502, v.problem()),
            Kind::Connect(ConnectError::Handshake) => respond(502, "upstream TLS handshake failed"),
            Kind::ClosedBeforeResponse => respond(502, "upstream closed the connection without a response"),
            Kind::ResponseTimeout => respond(504, "upstream did not respond in time"),
            Kind::BadResponseHead(why) => respond(502, why),
            Kind::SwitchedProtocols => respond(502, "upstream switched protocols without being asked to"),
            Kind::BodyWriteFailed => respond(502, "upstream failed while receiving the request body"),
            Kind::NoUpstream => respond(503, "no upstream endpoint available for this route"),
            Kind::AllDown(_) => respond(503, "every member of the endpoint group is down"),
            // Only when the retry it was dropped for could not be made after all.
            Kind::RetriedStatus(status) => {
                respond(status, "upstream unavailable, and no other member to retry on")
            }
            Kind::Internal(why) => respond(500, why),
            // The body is not read: a Content-Length one over the discard limit, or
            // a chunked one cut mid-way, closes the connection after the answer.
            Kind::BodyTooLarge => respond(413, "request body is larger than the limit (max_body_bytes)"),
            // The body is half-read: answered, then the connection closes.
            Kind::BodyTimeout(why) => Answer::Respond {
                status: 408,
                problem: why,
                close: true,
            },
        }
    }

    /// The status the access log and metrics record for this failure.
    pub fn status(&self) -> u16 {
        match self.answer() {
            Answer::Respond { status, .. } | Answer::Close { status } => status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_source_of_the_fault() {
        assert_eq!(ProxyError::connect(ConnectError::Refused).status(), 502);
        assert_eq!(ProxyError::connect(ConnectError::TimedOut).status(), 504);
        assert_eq!(ProxyError::response_timeout().status(), 504);
        assert_eq!(ProxyError::no_upstream().status(), 503);
        assert_eq!(ProxyError::no_upstream().source(), Source::Ringway);
        assert_eq!(ProxyError::client_gone().source(), Source::Client);
        assert_eq!(ProxyError::client_gone().answer(), Answer::Close { status: 400 });
        assert!(matches!(
            ProxyError::bad_request_body("invalid chunk size").answer(),
            Answer::Respond {
                status: 400,
                close: true,
                ..
            }
        ));
    }

    #[test]
    fn only_a_stale_pooled_connection_is_retried() {
        let stale = ProxyError::closed_before_response(Retry::IfReused);
        assert!(stale.is_retry_safe(true));
        assert!(
            !stale.is_retry_safe(false),
            "a fresh connection that closes is the upstream's answer"
        );
        assert!(!ProxyError::closed_before_response(Retry::Never).is_retry_safe(true));
        assert!(!ProxyError::response_timeout().is_retry_safe(true));
    }
}
