//! Replays the engine fuzzer's committed corpus and regression inputs on stable Rust, so a
//! change that breaks an invariant on a known input fails `make fuzz-check`, not only a fuzz run.

use std::path::Path;

fn replay(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            eprintln!("replaying {}", path.display());
            xsnoop_fuzz::engine::run(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn engine_corpus_keeps_the_invariants() {
    assert!(
        replay("corpus/engine") > 0,
        "the engine seed corpus is committed"
    );
}

#[test]
fn engine_regressions_keep_the_invariants() {
    replay("regressions/engine");
}
