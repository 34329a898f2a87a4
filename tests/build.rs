//! Compiles the testbed's helper XDP programs (`bpf/*.bpf.c`) with clang into OUT_DIR; tests
//! attach them with `ip link set dev IF xdp obj PATH` (see `xsnoop_tests::sink`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    println!("cargo:rerun-if-env-changed=CLANG");
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "x86_64-linux-gnu".to_owned());
    // One program so far; the list is where more go.
    const PROGRAMS: &[&str] = &["xdp_drop"];
    for name in PROGRAMS {
        let src = manifest.join(format!("bpf/{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-I/usr/include/{multiarch}"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(out.join(format!("{name}.bpf.o")))
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "compiling {} with {clang} failed ({other:?}); run `make deps` (clang, libbpf-dev, gcc-multilib)",
                src.display()
            ),
        }
    }
}
