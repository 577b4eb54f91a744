//! Event time: RFC 3339 text to epoch milliseconds, with a fast path for
//! the shapes gateways write and `time`'s full parser for the rest.

use super::error::TelemetryError;

/// RFC 3339 text to epoch milliseconds (the fast path for the usual shapes).
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, TelemetryError> {
    if let Some(ms) = fast_rfc3339_ms(text.as_bytes()) {
        return Ok(ms);
    }
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| TelemetryError::Timestamp)?;
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
