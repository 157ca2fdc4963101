//! The fields of an access log line, as `[log] fields` names them.

/// The fields of a line, in the order they are written. `[log] fields` picks some.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Time,
    Id,
    Client,
    Method,
    Path,
    Query,
    Host,
    Protocol,
    UserAgent,
    Referer,
    RequestBytes,
    Group,
    Route,
    Env,
    Version,
    Caller,
    Limit,
    Upstream,
    Status,
    Bytes,
    DurationUs,
    UpstreamUs,
    TunnelBytesIn,
    TunnelEnd,
}

impl Field {
    /// Every field, in line order.
    pub const ALL: [Field; 24] = [
        Field::Time,
        Field::Id,
        Field::Client,
        Field::Method,
        Field::Path,
        Field::Query,
        Field::Host,
        Field::Protocol,
        Field::UserAgent,
        Field::Referer,
        Field::RequestBytes,
        Field::Group,
        Field::Route,
        Field::Env,
        Field::Version,
        Field::Caller,
        Field::Limit,
        Field::Upstream,
        Field::Status,
        Field::Bytes,
        Field::DurationUs,
        Field::UpstreamUs,
        Field::TunnelBytesIn,
        Field::TunnelEnd,
    ];

    /// The JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::Id => "id",
            Field::Client => "client",
            Field::Method => "method",
            Field::Path => "path",
            Field::Query => "query",
            Field::Host => "host",
            Field::Protocol => "protocol",
            Field::UserAgent => "user_agent",
            Field::Referer => "referer",
            Field::RequestBytes => "request_bytes",
            Field::Group => "group",
            Field::Route => "route",
            Field::Env => "env",
            Field::Version => "version",
            Field::Caller => "caller",
            Field::Limit => "limit",
            Field::Upstream => "upstream",
            Field::Status => "status",
            Field::Bytes => "bytes",
            Field::DurationUs => "duration_us",
            Field::UpstreamUs => "upstream_us",
            Field::TunnelBytesIn => "tunnel_bytes_in",
            Field::TunnelEnd => "tunnel_end",
        }
    }

    /// The field named `name`.
    pub fn named(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Every field's bit.
    pub const EVERY: u32 = (1 << Field::ALL.len()) - 1;

    pub fn bit(self) -> u32 {
        1 << self as u32
    }
}
