//! The telemetry record: one gateway request, as tokenwatch reads it off Kafka.
//!
//! Parsing borrows from the Kafka message buffer (`Cow<str>` only allocates
//! when a JSON string carries escapes), so the hot path does not copy fields.
//! Validation turns the loose wire shape into an [`Event`] whose every field
//! has been checked once; the rest of the pipeline never re-checks.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

use super::error::TelemetryError;
use super::identity::looks_like_raw_token;
use super::timestamp::parse_rfc3339_ms;

/// A token id must be an identifier, never the token itself: empty, overlong
/// or token-shaped values are refused, and the error never echoes the value
/// (it may be a live credential).
pub fn check_token_id(token_id: &str) -> Result<(), TelemetryError> {
    if token_id.is_empty() {
        return Err(TelemetryError::Empty("token_id"));
    }
    if token_id.len() > MAX_TOKEN_ID_LEN || looks_like_raw_token(token_id) {
        return Err(TelemetryError::RawTokenInTokenId {
            len: token_id.len(),
        });
    }
    Ok(())
}

/// An event time before 2001 or after 2100 is a unit mistake (seconds for
/// milliseconds, say).
pub fn check_ts_ms(ts_ms: i64) -> Result<(), TelemetryError> {
    if (978_307_200_000..=4_102_444_800_000).contains(&ts_ms) {
        Ok(())
    } else {
        Err(TelemetryError::Timestamp)
    }
}

/// An event time further than `skew_ms` ahead of `now_ms` (the wall clock)
/// is refused: one such record would otherwise pin the detector's clock in
/// the future and blind it until a restart.
pub fn check_not_future(ts_ms: i64, now_ms: i64, skew_ms: i64) -> Result<(), TelemetryError> {
    if ts_ms > now_ms.saturating_add(skew_ms) {
        Err(TelemetryError::Future)
    } else {
        Ok(())
    }
}

/// Longest accepted `token_id`: a jti or a keyed hash is far shorter; anything
/// longer is most likely a raw token pasted in the wrong field.
pub const MAX_TOKEN_ID_LEN: usize = 128;

/// A validated request event. Borrows from the record buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub token_id: Cow<'a, str>,
    pub sub: Cow<'a, str>,
    /// The subject comes from claims whose signature was verified (by the
    /// gateway, or by tokenwatch against the issuer's keys). Only a verified
    /// subject is ever logged out; an unverified one revokes the token only.
    pub sub_verified: bool,
    pub ip: IpAddr,
    pub user_agent: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    pub status: u16,
    pub tenant: Option<Cow<'a, str>>,
    pub client_id: Option<Cow<'a, str>>,
    /// Token expiry and issue time, seconds since the epoch (JWT `exp`/`iat`).
    pub token_exp: Option<i64>,
    pub token_iat: Option<i64>,
    pub bytes: Option<u64>,
    pub latency_ms: Option<f64>,
    /// The raw token sealed for the revoker (see `respond::seal`). Never
    /// opened on the detection path.
    pub token_handle: Option<Cow<'a, str>>,
}

/// `ts` arrives either as RFC 3339 text or as epoch milliseconds. A
/// hand-written visitor rather than `#[serde(untagged)]`: untagged enums
/// buffer every value into an intermediate tree, which cost more than the
/// rest of the record put together (see benches/core.rs).
enum WireTs<'a> {
    Millis(i64),
    Float(f64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WireTs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("RFC 3339 text or epoch milliseconds")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireTs::Millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(WireTs::Millis)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireTs::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireTs::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireTs::Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string field that borrows from the buffer when it can; JSON null reads
/// as absent. serde's own `Cow<str>` inside an `Option` always copies, one
/// allocation per field per record, and an `Option` around this would read
/// every value's first byte twice.
#[derive(Default)]
struct Str<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Str(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The wire shape. Unknown fields are ignored on purpose: gateways and
/// shippers add their own, and dropping a record for an extra field would
/// lose detections.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    ts: Option<WireTs<'a>>,
    #[serde(borrow, default)]
    token_id: Str<'a>,
    #[serde(borrow, default)]
    sub: Str<'a>,
    sub_verified: Option<bool>,
    #[serde(borrow, default)]
    ip: Str<'a>,
    #[serde(borrow, default)]
    user_agent: Str<'a>,
    #[serde(borrow, default)]
    method: Str<'a>,
    #[serde(borrow, default)]
    path: Str<'a>,
    status: Option<u16>,
    #[serde(borrow, default)]
    tenant: Str<'a>,
    #[serde(borrow, default)]
    client_id: Str<'a>,
    token_exp: Option<i64>,
    token_iat: Option<i64>,
    bytes: Option<u64>,
    latency_ms: Option<f64>,
    #[serde(borrow, default)]
    token_handle: Str<'a>,
}

/// The value, or the error that names the missing field. Not `ok_or(..)`:
/// that builds the error and drops it again on every record.
fn required<T>(v: Option<T>, field: &'static str) -> Result<T, TelemetryError> {
    match v {
        Some(v) => Ok(v),
        None => Err(TelemetryError::Missing(field)),
    }
}

impl<'a> Event<'a> {
    /// Parses and validates one JSON record.
    pub fn parse(buf: &'a [u8]) -> Result<Event<'a>, TelemetryError> {
        read_text(buf, |text| Event::parse_text(text))
    }

    fn parse_text(text: &'a str) -> Result<Event<'a>, TelemetryError> {
        let wire: Wire<'a> = serde_json::from_str(text).map_err(TelemetryError::from_json)?;
        wire.validate()
    }
}

/// `read` applied to `buf` as text. UTF-8 is checked once over the whole
/// record, so that serde_json's `str` reader need not check each string:
/// per string, short fields fall off std's word-at-a-time ASCII path, and
/// that check was the largest single cost of a record (benches/core.rs).
///
/// A record that is not UTF-8 is read with U+FFFD in place of the bad bytes,
/// from a copy, rather than refused: NGINX's `escape=json` passes bytes
/// above 0x7F through as they come, so a client could otherwise make its own
/// record unreadable, and unscored, with one byte in a header.
pub fn read_text<'a, E>(
    buf: &'a [u8],
    read: impl for<'t> Fn(&'t str) -> Result<Event<'t>, E>,
) -> Result<Event<'a>, E> {
    // simdutf8 checks a 1 KB record in about half std's time (16 against
    // 30 ns, warm), and this runs once for every record either path reads.
    match simdutf8::basic::from_utf8(buf) {
        Ok(text) => read(text),
        Err(_) => read(&String::from_utf8_lossy(buf)).map(Event::into_owned),
    }
}

impl Event<'_> {
    /// The event with every string copied out of the record it borrows.
    pub fn into_owned(self) -> Event<'static> {
        fn own(s: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(s.into_owned())
        }
        Event {
            token_id: own(self.token_id),
            sub: own(self.sub),
            user_agent: own(self.user_agent),
            method: own(self.method),
            path: own(self.path),
            tenant: self.tenant.map(own),
            client_id: self.client_id.map(own),
            token_handle: self.token_handle.map(own),
            ..self
        }
    }
}

impl<'a> Wire<'a> {
    fn validate(self) -> Result<Event<'a>, TelemetryError> {
        let ts_ms = match required(self.ts, "ts")? {
            WireTs::Millis(ms) => ms,
            WireTs::Float(ms) if ms.is_finite() => ms as i64,
            WireTs::Float(_) => return Err(TelemetryError::Timestamp),
            WireTs::Text(text) => parse_rfc3339_ms(&text)?,
        };
        check_ts_ms(ts_ms)?;
        let token_id = required(self.token_id.0, "token_id")?;
        check_token_id(&token_id)?;
        let sub = required(self.sub.0, "sub")?;
        let ip_text = required(self.ip.0, "ip")?;
        let ip = parse_ip(&ip_text)?;
        Ok(Event {
            ts_ms,
            token_id,
            sub,
            sub_verified: self.sub_verified.unwrap_or(false),
            ip,
            user_agent: self.user_agent.0.unwrap_or(Cow::Borrowed("")),
            method: required(self.method.0, "method")?,
            path: without_query(required(self.path.0, "path")?),
            status: required(self.status, "status")?,
            tenant: self.tenant.0,
            client_id: self.client_id.0,
            token_exp: self.token_exp,
            token_iat: self.token_iat,
            bytes: self.bytes,
            latency_ms: self.latency_ms.filter(|v| v.is_finite()),
            token_handle: self.token_handle.0.filter(|h| !h.is_empty()),
        })
    }
}

/// Accepts a bare address, and the `[v6]:port` / `v4:port` forms that some
/// gateways log for the remote address; a zone (`%eth0`) is dropped.
fn parse_ip(text: &str) -> Result<IpAddr, TelemetryError> {
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        sock.ip()
    } else if let Some(ip) = text
        .split_once('%')
        .and_then(|(a, _)| a.trim_start_matches('[').parse().ok())
    {
        ip
    } else {
        return Err(TelemetryError::Ip);
    };
    Ok(canonical_ip(ip))
}

/// `::ffff:a.b.c.d` is the IPv4 address it maps: one client, one address,
/// one network prefix, however the gateway wrote it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The path without its query string: `?access_token=…` and other
/// credentials in query parameters never go further than the first hop.
pub fn without_query(path: Cow<'_, str>) -> Cow<'_, str> {
    match memchr::memchr(b'?', path.as_bytes()) {
        None => path,
        Some(i) => match path {
            Cow::Borrowed(p) => Cow::Borrowed(&p[..i]),
            Cow::Owned(mut p) => {
                p.truncate(i);
                Cow::Owned(p)
            }
        },
    }
}

#[cfg(test)]
mod tests;
