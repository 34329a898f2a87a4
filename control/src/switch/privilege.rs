//! What `xsnoop run` needs from the kernel, checked up front so a missing privilege is one clear
//! sentence instead of an `EPERM` from the middle of the BPF loader.
//!
//! Root is not required, only these capabilities (Linux ≥ 5.8):
//! - `CAP_BPF`: load the XDP classifier and create its maps (`CAP_SYS_ADMIN` also does);
//! - `CAP_NET_ADMIN`: attach XDP to the ports, and read their ethtool channels;
//! - `CAP_NET_RAW`: open AF_XDP sockets;
//! - `CAP_IPC_LOCK`: pin the UMEM (or an unlimited `RLIMIT_MEMLOCK`).
//!
//! A systemd unit grants them with `AmbientCapabilities=` under a dedicated user.

use std::fmt::Write as _;

/// One capability the daemon needs, with what can stand in for it.
struct Need {
    name: &'static str,
    bit: u32,
    /// Another capability that grants the same (CAP_SYS_ADMIN for CAP_BPF).
    alternative: Option<u32>,
    why: &'static str,
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

const NEEDS: [Need; 4] = [
    Need {
        name: "CAP_BPF",
        bit: CAP_BPF,
        alternative: Some(CAP_SYS_ADMIN),
        why: "load the XDP classifier",
    },
    Need {
        name: "CAP_NET_ADMIN",
        bit: CAP_NET_ADMIN,
        alternative: None,
        why: "attach XDP to the ports",
    },
    Need {
        name: "CAP_NET_RAW",
        bit: CAP_NET_RAW,
        alternative: None,
        why: "open AF_XDP sockets",
    },
    Need {
        name: "CAP_IPC_LOCK",
        bit: CAP_IPC_LOCK,
        alternative: None,
        why: "pin the packet memory (UMEM)",
    },
];

/// The effective capability set from `/proc/self/status` text (`CapEff:` in hex).
fn effective(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Whether `RLIMIT_MEMLOCK` is unlimited (then CAP_IPC_LOCK is not needed).
fn memlock_unlimited() -> bool {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    rc == 0 && r.rlim_cur == libc::RLIM_INFINITY
}

/// The capabilities missing from `caps` for `xsnoop run`, with why each is needed.
fn missing(caps: u64, memlock_unlimited: bool) -> Vec<&'static Need> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    NEEDS
        .iter()
        .filter(|n| !has(n.bit) && !n.alternative.is_some_and(has))
        .filter(|n| !(n.bit == CAP_IPC_LOCK && memlock_unlimited))
        .collect()
}

/// Checks this process's effective capabilities; the error lists each missing one and why.
pub fn check() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(caps) = effective(&status) else {
        // No procfs: let the kernel say no later rather than refuse a possibly able process.
        return Ok(());
    };
    let gaps = missing(caps, memlock_unlimited());
    if gaps.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("xsnoop run lacks ");
    for (i, n) in gaps.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(msg, "{sep}{} (to {})", n.name, n.why);
    }
    msg.push_str(": run it as root, or grant CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK (systemd: AmbientCapabilities=)");
    anyhow::bail!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(bits: &[u32]) -> u64 {
        bits.iter().fold(0, |a, b| a | 1 << b)
    }

    #[test]
    fn reads_the_effective_set_from_proc_status() {
        let status = "Name:\txsnoop\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective("Name: x\n"), None);
    }

    #[test]
    fn names_each_missing_capability_and_accepts_the_alternatives() {
        let all = caps(&[CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK]);
        assert!(missing(all, false).is_empty());
        // CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8 know no CAP_BPF).
        let old = caps(&[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK]);
        assert!(missing(old, false).is_empty());
        let names = |v: Vec<&Need>| v.iter().map(|n| n.name).collect::<Vec<_>>();
        assert_eq!(
            names(missing(caps(&[CAP_NET_ADMIN, CAP_NET_RAW]), false)),
            ["CAP_BPF", "CAP_IPC_LOCK"]
        );
        // An unlimited memlock limit makes CAP_IPC_LOCK unnecessary.
        assert_eq!(
            names(missing(caps(&[CAP_NET_ADMIN, CAP_NET_RAW]), true)),
            ["CAP_BPF"]
        );
        assert_eq!(missing(0, false).len(), 4);
    }
}
