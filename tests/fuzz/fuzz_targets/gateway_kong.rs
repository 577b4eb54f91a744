#![no_main]
// The kong adapter (see common.rs).
mod common;

static N: std::sync::OnceLock<tokenwatch::gateway::Normalizer> = std::sync::OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::check(tokenwatch::gateway::Format::Kong, &N, data);
});
