#![no_main]
// The envoy adapter (see common.rs).
mod common;

static N: std::sync::OnceLock<tokenwatch::gateway::Normalizer> = std::sync::OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::check(tokenwatch::gateway::Format::Envoy, &N, data);
});
