//! Compiles the testbed's helper XDP programs (`bpf/*.bpf.c`) into OUT_DIR; tests attach them
//! with `ip link set dev IF xdp obj PATH` (see `xsnoop_tests::sink`). The clang invocation lives
//! in `xsnoop-bpf-build`.

fn main() {
    if let Err(e) = xsnoop_bpf_build::compile_programs("bpf", &["xdp_drop"]) {
        panic!("{e}");
    }
}
