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
        Err(TelemetryError::Timestamp(ts_ms.to_string()))
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
            WireTs::Float(ms) => return Err(TelemetryError::Timestamp(ms.to_string())),
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
            ip,
            user_agent: self.user_agent.0.unwrap_or(Cow::Borrowed("")),
            method: required(self.method.0, "method")?,
            path: required(self.path.0, "path")?,
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
/// gateways log for the remote address.
fn parse_ip(text: &str) -> Result<IpAddr, TelemetryError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Ok(sock.ip());
    }
    Err(TelemetryError::Ip(text.chars().take(64).collect()))
}

/// RFC 3339 text to epoch milliseconds (the fast path for the usual shapes).
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, TelemetryError> {
    if let Some(ms) = fast_rfc3339_ms(text.as_bytes()) {
        return Ok(ms);
    }
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| TelemetryError::Timestamp(text.chars().take(40).collect()))?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The shapes gateways actually write — `YYYY-MM-DDTHH:MM:SS`, optional
/// fraction, `Z` or `±HH:MM` — read without the general parser, which cost
/// a third of the whole record (benches/core.rs). Anything else (leap
/// seconds, lowercase separators, out-of-range fields) returns `None` and
/// goes to `time`'s full RFC 3339 parser, which also produces the error.
fn fast_rfc3339_ms(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, min, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (i, &c) in frac[..digits.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod fast_ts_tests {
    use proptest::prelude::*;

    use super::*;

    fn slow(text: &str) -> Option<i64> {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos().div_euclid(1_000_000)) as i64)
    }

    proptest! {
        /// The fast path agrees with the general parser on every timestamp
        /// it accepts, and accepts every common shape.
        #[test]
        fn fast_path_agrees_with_the_general_parser(
            secs in 978_307_200i64..4_102_444_800,
            nanos in 0u32..1_000_000_000,
            digits in 0usize..10,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i32),
            zulu in any::<bool>(),
        ) {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
                .replace_nanosecond(nanos).unwrap();
            let t = if zulu { t } else {
                t.to_offset(time::UtcOffset::from_whole_seconds(offset_min * 60).unwrap())
            };
            let frac = format!("{:09}", t.nanosecond());
            let frac = if digits == 0 { String::new() } else { format!(".{}", &frac[..digits]) };
            let off = if zulu { "Z".to_owned() } else {
                let o = t.offset().whole_minutes();
                format!("{}{:02}:{:02}", if o < 0 { '-' } else { '+' }, o.abs() / 60, o.abs() % 60)
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{off}",
                t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second()
            );
            let fast = fast_rfc3339_ms(text.as_bytes());
            prop_assert!(fast.is_some(), "{text}");
            prop_assert_eq!(fast, slow(&text), "{}", text);
        }

        /// Arbitrary text never panics, and whatever the fast path accepts,
        /// the general parser reads the same way.
        #[test]
        fn fast_path_never_disagrees_on_junk(text in "[0-9T:Z.+-]{18,32}") {
            if let Some(ms) = fast_rfc3339_ms(text.as_bytes()) {
                prop_assert_eq!(Some(ms), slow(&text), "{}", text);
            }
        }
    }

    #[test]
    fn odd_but_valid_forms_fall_back_to_the_general_parser() {
        for text in [
            "2026-11-23t10:00:00Z",
            "2026-11-23T10:00:00z",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(fast_rfc3339_ms(text.as_bytes()), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T10:00:00z").unwrap(),
            parse_rfc3339_ms("2026-11-23T10:00:00Z").unwrap()
        );
        assert!(parse_rfc3339_ms("2026-02-30T10:00:00Z").is_err());
        assert!(parse_rfc3339_ms("2026-11-23T10:00:00").is_err());
    }
}

#[cfg(test)]
mod tests;
