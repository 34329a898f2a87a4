//! One place that knows how to compile xsnoop's C XDP programs (`*.bpf.c`) with clang, for the
//! build scripts of the crates that embed or attach them (`dataplane`, `bench`, `tests`).
//! Keeping the flags here means the switch, its benchmark and its testbed always run programs
//! built the same way, and a missing toolchain is reported the same way everywhere.
//!
//! Use it from a `build.rs` (it reads `CARGO_MANIFEST_DIR` and `OUT_DIR`, and prints `cargo:`
//! lines):
//!
//! ```no_run
//! if let Err(e) = xsnoop_bpf_build::compile_programs("bpf", &["xdp_drop"]) {
//!     panic!("{e}");
//! }
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Flags every program is compiled with: optimised (the verifier rejects most `-O0` code), with
/// BTF/debug info (aya and `ip link ... xdp obj` read it), for the BPF target, warnings as errors.
pub const CLANG_FLAGS: [&str; 6] = ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"];

/// What the packages providing clang and the BPF headers are called; every error names them.
const INSTALL_HINT: &str = "run `make deps` (or `apt install clang libbpf-dev gcc-multilib`)";

/// Why a program could not be built; the build script turns it into a failed build whose message
/// says what to install.
#[derive(Debug, thiserror::Error)]
pub enum BpfBuildError {
    /// A variable cargo always sets for build scripts is missing: not run by cargo.
    #[error(
        "{0} is not set: xsnoop-bpf-build is meant to be called from a build script run by cargo"
    )]
    NotInBuildScript(&'static str),
    /// The compiler could not be started at all (usually: clang is not installed).
    #[error("cannot run {clang} to build the XDP program {src}: {source}; {INSTALL_HINT}")]
    ClangMissing {
        clang: String,
        src: PathBuf,
        source: std::io::Error,
    },
    /// The compiler ran and failed (its diagnostics are above in the build output).
    #[error("compiling {src} with {clang} failed ({status}); missing headers? {INSTALL_HINT}")]
    CompileFailed {
        clang: String,
        src: PathBuf,
        status: ExitStatus,
    },
}

/// The compiler to run: `$CLANG` if set (e.g. a versioned `clang-16`), else `clang`.
fn clang() -> String {
    println!("cargo:rerun-if-env-changed=CLANG");
    env::var("CLANG").unwrap_or_else(|_| "clang".to_owned())
}

/// The multiarch include directory (`/usr/include/<triple>`): `clang -target bpf` finds
/// `<asm/types.h>` only there (or via gcc-multilib). Asked of gcc, else derived from the target
/// architecture.
fn multiarch_include() -> String {
    let triple = Command::new("gcc")
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
    format!("-I/usr/include/{triple}")
}

fn cargo_dir(var: &'static str) -> Result<PathBuf, BpfBuildError> {
    env::var_os(var)
        .map(PathBuf::from)
        .ok_or(BpfBuildError::NotInBuildScript(var))
}

/// Compiles `<crate>/<dir>/<name>.bpf.c` into `$OUT_DIR/<name>.bpf.o` for every name (`dir` is
/// relative to the calling crate's manifest), and tells cargo to rebuild when a source or
/// `$CLANG` changes. The crate then embeds or attaches `concat!(env!("OUT_DIR"), "/<name>.bpf.o")`.
pub fn compile_programs(dir: &str, names: &[&str]) -> Result<(), BpfBuildError> {
    let src_dir = cargo_dir("CARGO_MANIFEST_DIR")?.join(dir);
    let out_dir = cargo_dir("OUT_DIR")?;
    let clang = clang();
    let include = multiarch_include();
    for name in names {
        let src = src_dir.join(format!("{name}.bpf.c"));
        let out = out_dir.join(format!("{name}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, &include, &src, &out)?;
    }
    Ok(())
}

/// One clang run: `src` to the BPF object `out`.
fn compile(clang: &str, include: &str, src: &Path, out: &Path) -> Result<(), BpfBuildError> {
    let status = Command::new(clang)
        .args(CLANG_FLAGS)
        .arg(include)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status()
        .map_err(|source| BpfBuildError::ClangMissing {
            clang: clang.to_owned(),
            src: src.to_owned(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BpfBuildError::CompileFailed {
            clang: clang.to_owned(),
            src: src.to_owned(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = env::temp_dir().join(format!("xsnoop-bpf-build-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const PROGRAM: &str = "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
        SEC(\"xdp\") int pass(struct xdp_md *ctx) { return XDP_PASS; }\n\
        char LICENSE[] SEC(\"license\") = \"GPL\";\n";

    /// A real program compiles to an ELF object for the BPF machine (EM_BPF = 247).
    #[test]
    fn compiles_a_program_to_a_bpf_object() {
        let d = scratch("ok");
        let src = write(&d, "pass.bpf.c", PROGRAM);
        let out = d.join("pass.bpf.o");
        compile(&clang(), &multiarch_include(), &src, &out).unwrap();
        let obj = std::fs::read(&out).unwrap();
        assert_eq!(&obj[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 247, "e_machine");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// -Wall -Werror are in force: a warning fails the build, and the error says what failed.
    #[test]
    fn a_warning_fails_the_build() {
        let d = scratch("warn");
        let text = PROGRAM.replace("{ return", "{ int unused; return");
        let src = write(&d, "warn.bpf.c", &text);
        let err = compile(&clang(), &multiarch_include(), &src, &d.join("warn.bpf.o")).unwrap_err();
        assert!(matches!(err, BpfBuildError::CompileFailed { .. }), "{err}");
        assert!(err.to_string().contains("warn.bpf.c"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A compiler that does not exist is reported as such, naming what to install.
    #[test]
    fn missing_clang_names_the_packages() {
        let src = PathBuf::from("x.bpf.c");
        let err = compile(
            "/nonexistent/clang",
            "-I/usr/include",
            &src,
            Path::new("x.o"),
        )
        .unwrap_err();
        assert!(matches!(err, BpfBuildError::ClangMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("make deps") && msg.contains("apt install clang libbpf-dev"),
            "{msg}"
        );
    }

    /// Outside cargo's build-script environment the error says so instead of guessing paths.
    #[test]
    fn outside_a_build_script_is_an_error() {
        if env::var_os("OUT_DIR").is_some() {
            return; // cargo sets OUT_DIR for tests only of crates with a build script: not ours
        }
        let err = compile_programs("bpf", &["x"]).unwrap_err();
        assert!(
            matches!(err, BpfBuildError::NotInBuildScript("OUT_DIR")),
            "{err}"
        );
    }
}
