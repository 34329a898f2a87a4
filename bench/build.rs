//! Compiles the benchmark's XDP programs (`bpf/*.bpf.c`: generator, counter, ceiling) into
//! OUT_DIR, so the bench binary embeds the exact programs it measures with and needs no files at
//! run time. The clang invocation (shared with the switch's classifier) lives in
//! `xsnoop-bpf-build`.

fn main() {
    if let Err(e) = xsnoop_bpf_build::compile_programs("bpf", &["gen", "count", "ceiling"]) {
        panic!("{e}");
    }
}
