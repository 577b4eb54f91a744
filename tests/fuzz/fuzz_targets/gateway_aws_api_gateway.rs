#![no_main]
// The aws_api_gateway adapter (see common.rs).
mod common;

static N: std::sync::OnceLock<tokenwatch::gateway::Normalizer> = std::sync::OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::check(tokenwatch::gateway::Format::AwsApiGateway, &N, data);
});
