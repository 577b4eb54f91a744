//! The edge check (`/v1/check`) per request, without the HTTP server: derive
//! the token id from the Authorization header exactly as the adapters do
//! (keyed HMAC for an opaque token, base64 + JSON for a JWT's jti) and look
//! it up in a denylist of 100,000 revoked tokens. Against a bare lookup of
//! an already-derived id in the same set, in the same run.
//!
//! `cargo bench --bench edge`

use std::sync::Arc;

use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokenwatch::api::check::{EdgeCheck, Verdict};
use tokenwatch::respond::{DenyEntry, Denylist};
use tokenwatch::telemetry::{keyed_token_id, TokenHasher};

const KEY: &[u8] = b"bench-hash-key-0123456789";

fn jwt(jti: &str) -> String {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        e(r#"{"alg":"RS256","kid":"k1"}"#),
        e(&format!(
            r#"{{"iss":"https://idp.example","sub":"user-1","aud":"api","iat":1795428000,"exp":1795431600,"jti":"{jti}","scope":"orders"}}"#
        )),
        e(&"s".repeat(342))
    )
}

fn bench(c: &mut Criterion) {
    let denylist = Arc::new(Denylist::default());
    for i in 0..100_000u32 {
        let id = if i % 2 == 0 {
            keyed_token_id(KEY, &format!("opaque-{i}"))
        } else {
            format!("jti-{i}")
        };
        denylist.insert(&DenyEntry {
            decision_id: format!("{id}/revoke"),
            token_id: id,
            revoked_at_ms: 0,
            until_ms: i64::MAX,
            settled: true,
        });
    }
    denylist.mark_ready();
    let edge = EdgeCheck {
        denylist: denylist.clone(),
        hasher: TokenHasher::new(KEY),
        verifier: None,
    };
    let now = 1_795_428_000_000;
    let opaque_denied = "Bearer opaque-42".to_string();
    let opaque_allowed = "Bearer opaque-not-revoked-7f3a".to_string();
    let jwt_denied = format!("Bearer {}", jwt("jti-43"));
    let jwt_allowed = format!("Bearer {}", jwt("jti-fresh"));
    assert_eq!(edge.check([opaque_denied.as_str()], now), Verdict::Denied);
    assert_eq!(edge.check([jwt_denied.as_str()], now), Verdict::Denied);
    assert_eq!(edge.check([opaque_allowed.as_str()], now), Verdict::Allowed);
    assert_eq!(edge.check([jwt_allowed.as_str()], now), Verdict::Allowed);

    let mut g = c.benchmark_group("edge_check");
    g.throughput(Throughput::Elements(1));
    let known = keyed_token_id(KEY, "opaque-42");
    g.bench_function("baseline_lookup_of_a_derived_id", |b| {
        b.iter(|| denylist.is_denied(black_box(&known), now))
    });
    for (name, header) in [
        ("opaque_denied", &opaque_denied),
        ("opaque_allowed", &opaque_allowed),
        ("jwt_denied", &jwt_denied),
        ("jwt_allowed", &jwt_allowed),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| edge.check([black_box(header.as_str())], now))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
