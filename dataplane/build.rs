//! Compiles the XDP classifier (`ebpf/xsnoop.bpf.c`) with clang into OUT_DIR; the crate embeds
//! the object (`xdp::PROGRAM_OBJECT`), so the switch binary carries the exact program it was
//! tested with and needs no files at run time. Also the rate-probe helpers
//! (`ebpf/xsnoop_probe.bpf.c`, `xdp::PROBE_OBJECT`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // clang -target bpf finds <asm/types.h> only in the multiarch include dir (or via gcc-multilib).
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| {
            format!(
                "{}-linux-gnu",
                env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default()
            )
        });

    for name in ["xsnoop", "xsnoop_probe"] {
        let src = manifest.join(format!("../ebpf/{name}.bpf.c"));
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
            .join(format!("{name}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, &multiarch, &src, &out);
    }
}

fn compile(clang: &str, multiarch: &str, src: &std::path::Path, out: &std::path::Path) {
    let result = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status();
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "compiling {} with {clang} failed ({status}); missing headers? run `make deps` (installs clang, libbpf-dev, gcc-multilib)",
            src.display()
        ),
        Err(e) => panic!(
            "cannot run {clang} to build the XDP program {}: {e}; run `make deps` (installs clang and libbpf-dev)",
            src.display()
        ),
    }
}
