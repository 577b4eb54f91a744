// Shared by the gateway targets: any bytes, never a panic; what an adapter
// accepts is valid telemetry, and its dead-letter copy is always produced.
use std::sync::{Arc, OnceLock};

use tokenwatch::gateway::{FieldMap, Format, Normalizer, TrustedProxies};

pub fn check(format: Format, cell: &'static OnceLock<Normalizer>, data: &[u8]) {
    let n = cell.get_or_init(|| {
        Normalizer::new(
            FieldMap::preset(format).expect("preset"),
            TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]),
            Arc::from(&b"fuzz-hash-key-0123456789"[..]),
            None,
        )
    });
    if let Ok(t) = n.normalize(data) {
        if let Err(e) = tokenwatch::telemetry::Event::parse(&t.to_json()) {
            panic!("normalized telemetry does not read back: {e}");
        }
    }
    let _ = n.redact(data);
}
