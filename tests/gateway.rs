//! Gateway adapters on realistic sample records (data/gateways/): each
//! becomes valid telemetry with the token identified and the raw token gone;
//! each malformed one gets its reason; no input makes a parser panic.

mod common;

use std::sync::Arc;

use common::repo;
use proptest::prelude::*;
use serde_json::Value;
use tokenwatch::gateway::{FieldMap, Format, GatewayError, Normalizer, TrustedProxies};
use tokenwatch::seal::Sealer;
use tokenwatch::telemetry::{keyed_token_id, Event};

const HASH_KEY: &[u8] = b"test-hash-key-0123456789abcdef";

fn normalizer(format: Format, sealer: Option<Sealer>) -> Normalizer {
    Normalizer::new(
        FieldMap::preset(format).expect("preset"),
        TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]),
        Arc::from(HASH_KEY),
        sealer,
    )
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo(&format!("data/gateways/{name}.json"))).unwrap()
}

/// Every credential-looking string in a sample: the bearer tokens.
fn raw_tokens(record: &[u8]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(t) = s.strip_prefix("Bearer ") {
                    out.push(t.to_owned());
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&serde_json::from_slice(record).unwrap(), &mut out);
    out
}

const JTI: &str = "0f3c6c1e-6a49-4b7e-9d0e-2f1f8f7b9a10";

#[test]
fn every_sample_becomes_valid_telemetry_without_its_token() {
    let key = Sealer::generate_key();
    let sealer = Sealer::new([("k1", key.as_str())]).unwrap();
    let cases = [
        ("envoy", Format::Envoy, JTI, "alice", "81.2.69.142", 200),
        ("nginx", Format::Nginx, "", "", "81.2.69.142", 201),
        ("kong", Format::Kong, JTI, "alice", "81.2.69.142", 200),
        (
            "aws-api-gateway",
            Format::AwsApiGateway,
            "7d3e0b8a-1c2f-4e5d-8a9b-0c1d2e3f4a5b",
            "bob",
            "81.2.69.142",
            200,
        ),
        ("traefik", Format::Traefik, JTI, "alice", "81.2.69.142", 200),
    ];
    for (name, format, jti, sub, ip, status) in cases {
        let rec = sample(name);
        let t = normalizer(format, Some(sealer.clone()))
            .normalize(&rec)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tokens = raw_tokens(&rec);
        // API Gateway logs the authorizer's claims, never the header: the
        // leak checks below must have a token to look for everywhere else.
        if format == Format::AwsApiGateway {
            assert!(tokens.is_empty(), "{name}: sample carries a token");
            assert!(t.token_handle.is_none(), "{name}: nothing to seal");
        } else {
            assert_eq!(tokens.len(), 1, "{name}: the sample's bearer token");
        }
        if jti.is_empty() {
            // Opaque token: the keyed hash.
            assert_eq!(t.token_id, keyed_token_id(HASH_KEY, &tokens[0]), "{name}");
        } else {
            assert_eq!(t.token_id, jti, "{name}");
        }
        assert_eq!(t.sub, sub, "{name}");
        assert_eq!(
            t.ip.to_string(),
            ip,
            "{name}: the client behind the trusted proxy"
        );
        assert_eq!(t.status, status, "{name}");
        assert!(
            t.ts_ms > 1_795_427_000_000 && t.ts_ms < 1_795_429_000_000,
            "{name}: {}",
            t.ts_ms
        );
        let json = t.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        for raw in &tokens {
            assert!(
                !text.contains(raw.as_str()),
                "{name}: raw token in the telemetry"
            );
            // The handle opens to exactly that token, for the revoker only.
            let handle = t.token_handle.as_deref().expect("sealed");
            assert_eq!(&sealer.open(&t.token_id, handle).unwrap(), raw, "{name}");
        }
        let e = Event::parse(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.token_id, t.token_id);
        // And the dead-letter copy of the raw record carries no token either.
        let redacted = String::from_utf8(normalizer(format, None).redact(&rec)).unwrap();
        for raw in &tokens {
            assert!(
                !redacted.contains(raw.as_str()),
                "{name}: raw token in the dead-letter copy"
            );
        }
    }
}

#[test]
fn sample_details_are_read_in_each_format_s_units() {
    let envoy_rec = sample("envoy");
    let envoy = normalizer(Format::Envoy, None)
        .normalize(&envoy_rec)
        .unwrap();
    assert_eq!(envoy.latency_ms, Some(12.0));
    assert_eq!(envoy.client_id.as_deref(), Some("web-app"));
    assert_eq!(
        (envoy.token_iat, envoy.token_exp),
        (Some(1795427940), Some(1795431540))
    );
    let nginx_rec = sample("nginx");
    let nginx = normalizer(Format::Nginx, None)
        .normalize(&nginx_rec)
        .unwrap();
    assert_eq!(nginx.latency_ms, Some(15.0));
    assert_eq!(nginx.bytes, Some(512));
    assert_eq!(nginx.user_agent, "okhttp/4.12.0");
    let traefik_rec = sample("traefik");
    let traefik = normalizer(Format::Traefik, None)
        .normalize(&traefik_rec)
        .unwrap();
    assert!((traefik.latency_ms.unwrap() - 14.523).abs() < 1e-9);
    assert_eq!(traefik.ts_ms, 1_795_428_004_123);
    let aws_rec = sample("aws-api-gateway");
    let aws = normalizer(Format::AwsApiGateway, None)
        .normalize(&aws_rec)
        .unwrap();
    assert_eq!(aws.ts_ms, 1_795_428_003_000);
    assert_eq!(aws.client_id.as_deref(), Some("ios-app"));
    assert!(
        aws.token_handle.is_none(),
        "API Gateway never logs the token"
    );
}

/// NGINX's `escape=json` writes bytes above 0x7F as they come, so a client
/// can put invalid UTF-8 in its own record with one header byte. The record
/// is still scored, with U+FFFD for the bad bytes, not dead-lettered.
#[test]
fn a_record_made_invalid_utf8_by_the_client_is_still_read() {
    let good = sample("nginx");
    let want = normalizer(Format::Nginx, None).normalize(&good).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    for (field, value) in [("user_agent", "okhttp/4.12.0"), ("host", "api.example.com")] {
        let at = text.find(&format!("\"{field}\": \"{value}")).unwrap() + field.len() + 5;
        let mut bad = good.clone();
        bad.splice(at..at, [0xFF, 0xC3]);
        assert!(std::str::from_utf8(&bad).is_err());
        let got = normalizer(Format::Nginx, None)
            .normalize(&bad)
            .unwrap_or_else(|e| panic!("{field}: {e}"));
        assert_eq!(got.token_id, want.token_id, "{field}");
        assert_eq!(got.ip, want.ip);
        let ua = if field == "user_agent" {
            format!("\u{FFFD}\u{FFFD}{value}")
        } else {
            want.user_agent.to_string()
        };
        assert_eq!(got.user_agent, ua, "{field}");
    }
}

#[test]
fn malformed_samples_get_their_reason() {
    let text = std::fs::read_to_string(repo("data/gateways/malformed.ndjson")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let format: Format = serde_json::from_value(case["format"].clone()).unwrap();
        let record = match &case["record"] {
            Value::String(s) => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let err = normalizer(format, None).normalize(&record).unwrap_err();
        assert_eq!(err.reason(), case["reason"], "{line}: {err}");
        assert!(
            !err.to_string().contains("YWxpY2U6c2VjcmV0"),
            "no credential in the message"
        );
        n += 1;
    }
    assert!(n >= 6);
}

#[test]
fn a_mapped_format_reads_a_user_s_own_layout() {
    let map: FieldMap = serde_json::from_value(serde_json::json!({
        "ts": "/@timestamp", "remote_addr": "/client/ip", "authorization": "/http/request/headers/authorization",
        "method": "/http/request/method", "path": "/url/path", "status": "/http/response/status_code",
        "user_agent": "/user_agent/original"
    }))
    .unwrap();
    map.check().unwrap();
    let n = Normalizer::new(map, TrustedProxies::default(), Arc::from(HASH_KEY), None);
    let rec = br#"{"@timestamp":"2026-11-23T10:00:00Z","client":{"ip":"81.2.69.142"},
        "http":{"request":{"method":"GET","headers":{"authorization":"Bearer abc.def"}},"response":{"status_code":204}},
        "url":{"path":"/v1/x"},"user_agent":{"original":"curl/8"}}"#;
    let t = n.normalize(rec).unwrap();
    assert_eq!(t.token_id, keyed_token_id(HASH_KEY, "abc.def"));
    assert_eq!(t.status, 204);
    let bad: FieldMap = serde_json::from_value(serde_json::json!({"ts": "timestamp"})).unwrap();
    assert!(bad.check().unwrap_err().contains("JSON pointer"));
    assert_eq!(
        Normalizer::new(
            FieldMap::preset(Format::Nginx).unwrap(),
            TrustedProxies::default(),
            Arc::from(HASH_KEY),
            None
        )
        .normalize(b"{\"time\": 5"),
        Err(GatewayError::Json)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No byte string makes any adapter panic.
    #[test]
    fn adapters_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for f in [Format::Envoy, Format::Nginx, Format::Kong, Format::AwsApiGateway, Format::Traefik] {
            let n = normalizer(f, None);
            let _ = n.normalize(&bytes);
            let _ = n.redact(&bytes);
        }
    }

    /// Nor does a sample with any one field replaced by an arbitrary JSON
    /// value; and whatever it produces reads back as the same event.
    #[test]
    fn adapters_never_panic_on_mutated_samples(field in 0usize..64, value in prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::Null),
        Just(serde_json::json!({"a": [1, "b"]})),
    ]) {
        for (name, f) in [("envoy", Format::Envoy), ("nginx", Format::Nginx), ("kong", Format::Kong),
                          ("aws-api-gateway", Format::AwsApiGateway), ("traefik", Format::Traefik)] {
            let mut v: Value = serde_json::from_slice(&sample(name)).unwrap();
            let obj = v.as_object_mut().unwrap();
            let key = obj.keys().nth(field % obj.len()).unwrap().clone();
            obj.insert(key, value.clone());
            if let Ok(t) = normalizer(f, None).normalize(&serde_json::to_vec(&v).unwrap()) {
                let json = t.to_json();
                let back = Event::parse(&json);
                prop_assert!(back.is_ok(), "{name}: {:?}", back);
                let back = back.unwrap();
                prop_assert_eq!(
                    (back.ts_ms, &back.token_id, &back.sub, back.ip, &back.path, back.status),
                    (t.ts_ms, &t.token_id, &t.sub, t.ip, &t.path, t.status),
                    "{}", name
                );
            }
        }
    }
}

#[tokio::test]
async fn with_a_jwks_only_a_verified_jwt_is_known_by_its_jti() {
    use base64::Engine;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use tokenwatch::gateway::JwtVerifier;

    let secret = b"issuer-signing-secret-0123456789abcdef";
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let jwks = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": k}]});
    // The issuer's JWKS on a real HTTP server on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let body = jwks.clone();
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let verifier = JwtVerifier::fetch(&format!("http://{addr}/jwks.json"), &reqwest::Client::new())
        .await
        .unwrap();

    let sign = |key: &[u8], claims: Value| {
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("k1".into());
        encode(&h, &claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let claims = serde_json::json!({"jti": "victim-jti", "sub": "alice", "exp": 1_795_431_540i64});
    let genuine = sign(secret, claims.clone());
    let forged_token = sign(b"attacker-secret", claims);
    let n = normalizer(Format::Nginx, None).with_verifier(Some(verifier));
    let rec = |token: &str| {
        let mut v: Value = serde_json::from_slice(&sample("nginx")).unwrap();
        v["authorization"] = Value::from(format!("Bearer {token}"));
        serde_json::to_vec(&v).unwrap()
    };
    let (genuine, forged) = (rec(&genuine), rec(&forged_token));
    let ok = n.normalize(&genuine).unwrap();
    assert_eq!(ok.token_id, "victim-jti");
    assert_eq!(ok.sub, "alice");
    let bad = n.normalize(&forged).unwrap();
    assert_eq!(
        bad.token_id,
        keyed_token_id(HASH_KEY, &forged_token),
        "a forged jti is not believed"
    );
    assert_eq!(bad.sub, "", "nor are its claims");
    // Without a verifier the same forgery would pass as the victim's token:
    // the reason to configure one.
    assert_eq!(
        normalizer(Format::Nginx, None)
            .normalize(&forged)
            .unwrap()
            .token_id,
        "victim-jti"
    );
}

#[test]
fn a_request_with_several_bearer_tokens_is_the_traffic_of_each() {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    use base64::Engine as _;
    let stolen = format!(
        "{}.{}.{}",
        e(r#"{"alg":"RS256"}"#),
        e(r#"{"jti":"stolen-jti","sub":"victim","exp":1900000000}"#),
        e("sig")
    );
    let mut v: Value = serde_json::from_slice(&sample("nginx")).unwrap();
    v["authorization"] = format!("Bearer decoy-token, Bearer {stolen}, bearer decoy-token").into();
    let key = Sealer::generate_key();
    let sealer = Sealer::new([("k1", key.as_str())]).unwrap();
    let n = normalizer(Format::Nginx, Some(sealer.clone()));
    let rec = serde_json::to_vec(&v).unwrap();
    let got = n.normalize_all(&rec).unwrap();
    assert_eq!(got.event.token_id, keyed_token_id(HASH_KEY, "decoy-token"));
    assert_eq!(got.others.len(), 1, "the repeated decoy counts once");
    let other = &got.others[0];
    assert_eq!(other.token_id, "stolen-jti");
    // Its own claims (unverified here), the request's own fields.
    assert_eq!((other.sub.as_ref(), other.sub_verified), ("victim", false));
    assert_eq!(other.token_exp, Some(1_900_000_000));
    assert_eq!((other.ip, other.status), (got.event.ip, got.event.status));
    let handle = other
        .token_handle
        .as_deref()
        .expect("sealed for the revoker");
    assert_eq!(sealer.open("stolen-jti", handle).unwrap().as_str(), stolen);
    // A token appended whose id cannot be derived (a jti too long to be an
    // id) is left out; it does not make the request, and the stolen token
    // before it, unscored.
    let unusable = format!(
        "{}.{}.{}",
        e(r#"{"alg":"RS256"}"#),
        e(&format!(r#"{{"jti":"{}"}}"#, "x".repeat(4096))),
        e("sig")
    );
    v["authorization"] = format!("Bearer decoy-token, Bearer {stolen}, Bearer {unusable}").into();
    let rec = serde_json::to_vec(&v).unwrap();
    let got = n.normalize_all(&rec).expect("the record is still scored");
    let ids: Vec<&str> = got.others.iter().map(|o| o.token_id.as_ref()).collect();
    assert_eq!(ids, ["stolen-jti"]);
    // The usual request has no others.
    let rec = sample("nginx");
    let plain = n.normalize_all(&rec).unwrap();
    assert!(plain.others.is_empty());
}
