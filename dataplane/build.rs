//! Compiles the XDP classifier (`ebpf/xsnoop.bpf.c`) into OUT_DIR; the crate embeds the object
//! (`xdp::PROGRAM_OBJECT`), so the switch binary carries the exact program it was tested with and
//! needs no files at run time. Also the rate-probe helpers (`ebpf/xsnoop_probe.bpf.c`,
//! `xdp::PROBE_OBJECT`). The clang invocation lives in `xsnoop-bpf-build`.

fn main() {
    if let Err(e) = xsnoop_bpf_build::compile_programs("../ebpf", &["xsnoop", "xsnoop_probe"]) {
        panic!("{e}");
    }
}
