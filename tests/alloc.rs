//! The hot path allocates nothing per event: once a token, its subject and
//! its address are known, parsing a telemetry record and `Detector::observe`
//! (geo, features, score, verdict) run without touching the heap. Counted by a global allocator that tallies
//! the calls made on this thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tokenwatch::detect::Action;
use tokenwatch::sim::{self, SimParams, World};
use tokenwatch::telemetry::Event;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is a const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn observing_known_tokens_allocates_nothing() {
    let world = World::from_geo(&common::geo().load().db);
    let events = sim::generate(
        &world,
        &SimParams {
            users: 100,
            span_ms: 3600 * 1000,
            ..SimParams::default()
        },
    );
    let records: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&e.to_wire(&e.sim_token_id(7), None, false)).unwrap())
        .collect();
    // The stream's last requests again, a second later: the same tokens,
    // subjects and addresses, attacks included, so every one is known.
    let replay: Vec<Vec<u8>> = records[records.len() - 2000..]
        .iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_slice(r).unwrap();
            let ts = Event::parse(r).unwrap().ts_ms + 1000;
            v["ts"] = ts.into();
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    let mut d = common::detector();
    for r in &records {
        d.observe(&Event::parse(r).unwrap());
    }
    let before = d.stats();
    let (mut flagged, mut located) = (0, 0);
    let start = allocs();
    for r in &replay {
        let v = d.observe(&Event::parse(r).unwrap());
        flagged += u32::from(!matches!(v.action, Action::None));
        located += u32::from(matches!(v.lookup, tokenwatch::geo::Lookup::Located(_)));
    }
    let spent = allocs() - start;
    let after = d.stats();

    // The premise: nothing new was met, and the replay is not trivial.
    assert_eq!(after.tracked, before.tracked, "a replayed token was new");
    assert_eq!(after.geo_cache_misses, before.geo_cache_misses);
    assert!(located > 1500, "{located} located");
    assert!(flagged > 0, "the replay holds attacks");
    assert_eq!(spent, 0, "{spent} allocations over {} events", replay.len());

    // And the premise can fail: a token never seen does allocate.
    let mut fresh: serde_json::Value = serde_json::from_slice(&replay[0]).unwrap();
    fresh["token_id"] = "never-seen-before".into();
    let fresh = serde_json::to_vec(&fresh).unwrap();
    let fresh = Event::parse(&fresh).unwrap();
    let start = allocs();
    d.observe(&fresh);
    assert!(allocs() > start, "a new token's state is a heap node");
}
