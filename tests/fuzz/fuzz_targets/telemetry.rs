#![no_main]
// The native telemetry parser: any bytes, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tokenwatch::telemetry::Event::parse(data);
});
