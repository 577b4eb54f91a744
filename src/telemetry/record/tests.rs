use super::*;

const GOOD: &str = r#"{"ts":"2026-11-23T10:00:00.250Z","token_id":"jti-123","sub":"alice",
    "ip":"81.2.69.142","user_agent":"Mozilla/5.0","method":"GET","path":"/v1/orders",
    "status":200,"extra_field":{"ignored":true}}"#;

#[test]
fn parses_rfc3339_and_ignores_unknown_fields() {
    let e = Event::parse(GOOD.as_bytes()).expect("valid record");
    assert_eq!(e.ts_ms, 1_795_428_000_250);
    assert_eq!(e.token_id, "jti-123");
    assert_eq!(e.ip, "81.2.69.142".parse::<IpAddr>().unwrap());
    assert!(
        matches!(e.token_id, Cow::Borrowed(_)),
        "no copy for plain strings"
    );
}

#[test]
fn epoch_millis_and_ipv6_with_port() {
    let rec = r#"{"ts":1795428000250,"token_id":"t","sub":"s","ip":"[2001:db8::1]:443",
        "method":"POST","path":"/","status":201}"#;
    let e = Event::parse(rec.as_bytes()).unwrap();
    assert_eq!(e.ts_ms, 1_795_428_000_250);
    assert_eq!(e.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
}

#[test]
fn each_missing_required_field_is_named() {
    for field in ["ts", "token_id", "sub", "ip", "method", "path", "status"] {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v.as_object_mut().unwrap().remove(field);
        let err = Event::parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, TelemetryError::Missing(field), "field {field}");
    }
}

#[test]
fn bad_values_are_typed_errors() {
    let bad_ip = GOOD.replace("81.2.69.142", "not-an-ip");
    assert!(matches!(
        Event::parse(bad_ip.as_bytes()),
        Err(TelemetryError::Ip)
    ));
    let bad_ts = GOOD.replace("2026-11-23T10:00:00.250Z", "yesterday");
    assert!(matches!(
        Event::parse(bad_ts.as_bytes()),
        Err(TelemetryError::Timestamp)
    ));
    let seconds = GOOD.replace("\"2026-11-23T10:00:00.250Z\"", "1795428000");
    assert!(matches!(
        Event::parse(seconds.as_bytes()),
        Err(TelemetryError::Timestamp)
    ));
    assert!(matches!(
        Event::parse(b"{not json"),
        Err(TelemetryError::Json(_))
    ));
}

#[test]
fn null_strings_are_absent_and_control_characters_are_json_errors() {
    let null_sub = GOOD.replace(r#""alice""#, "null");
    assert_eq!(
        Event::parse(null_sub.as_bytes()).unwrap_err(),
        TelemetryError::Missing("sub")
    );
    let null_ua = GOOD.replace(r#""Mozilla/5.0""#, "null");
    assert_eq!(Event::parse(null_ua.as_bytes()).unwrap().user_agent, "");
    let number_sub = GOOD.replace(r#""alice""#, "7");
    assert_eq!(
        Event::parse(number_sub.as_bytes()).unwrap_err().reason(),
        "json"
    );
    // A raw control character inside a string is not JSON.
    let nul = GOOD.replace("alice", "al\u{0}ice");
    assert_eq!(Event::parse(nul.as_bytes()).unwrap_err().reason(), "json");
}

/// A byte that is not UTF-8, in a field read or one ignored, is read as
/// U+FFFD: a client must not be able to make its own record unscored.
#[test]
fn bytes_that_are_not_utf8_are_replaced_not_refused() {
    for field in ["Mozilla", "ignored"] {
        let mut latin1 = GOOD.as_bytes().to_vec();
        latin1[GOOD.find(field).unwrap()] = 0xE9;
        let e = Event::parse(&latin1).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert_eq!(e.token_id, "jti-123");
        let ua = if field == "Mozilla" {
            "\u{FFFD}ozilla/5.0"
        } else {
            "Mozilla/5.0"
        };
        assert_eq!(e.user_agent, ua);
    }
}

#[test]
fn escaped_strings_are_unescaped() {
    let rec = GOOD.replace("Mozilla/5.0", r#"Mo\u007ailla \"x\""#);
    let e = Event::parse(rec.as_bytes()).unwrap();
    assert_eq!(e.user_agent, r#"Mozilla "x""#);
    assert!(matches!(e.user_agent, Cow::Owned(_)));
}

#[test]
fn a_raw_jwt_in_token_id_is_refused_without_echoing_it() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
    let rec = GOOD.replace("jti-123", jwt);
    let err = Event::parse(rec.as_bytes()).unwrap_err();
    assert!(matches!(err, TelemetryError::RawTokenInTokenId { .. }));
    assert!(!err.to_string().contains("eyJ"));
}
