#![no_main]
// The kong adapter: any bytes, never a panic; what it accepts is valid
// telemetry (or out of the accepted time range), and its dead-letter copy
// is always produced.
use std::sync::{Arc, OnceLock};

use tokenwatch::gateway::{FieldMap, Format, Normalizer, TrustedProxies};

fn normalizer() -> &'static Normalizer {
    static N: OnceLock<Normalizer> = OnceLock::new();
    N.get_or_init(|| {
        Normalizer::new(
            FieldMap::preset(Format::Kong).expect("preset"),
            TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]),
            Arc::from(&b"fuzz-hash-key-0123456789"[..]),
            None,
        )
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let n = normalizer();
    if let Ok(t) = n.normalize(data) {
        if let Err(e) = tokenwatch::telemetry::Event::parse(&t.to_json()) {
            assert_eq!(e.reason(), "timestamp", "{e}");
        }
    }
    let _ = n.redact(data);
});
