//! Replays the committed fuzz corpus (`fuzz/corpus/dataplane_worker`) through
//! the worker fuzz program, so every CI run re-checks the inputs the fuzzer
//! found interesting, and prints how deep they reach.

#[test]
fn committed_corpus_replays_without_panic() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/dataplane_worker"
    );
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("corpus folder {dir} is missing");
    };
    let mut total = dataplane::counters::Snapshot::default();
    let mut n = 0;
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let s = dataplane::fuzzing::run(&data);
        total.add(&s);
        n += 1;
    }
    assert!(n > 0, "empty corpus");
    let show = [
        "new_connections",
        "requests_dispatched",
        "thop_create_sent",
        "handoff_acked",
        "forwarded",
        "responses_4xx",
        "responses_5xx",
        "syncookies_validated",
    ];
    for k in show {
        println!("{k}: {}", total.get(k));
    }
}
