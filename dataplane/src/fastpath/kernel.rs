//! The one system call aya 0.14 has no wrapper for: creating a standalone inner DEVMAP_HASH
//! (aya has no `DevMapHash::create`, and `aya-obj`, which `MapData::create` needs, is not a
//! dependency of this crate). The parameters match the `fp_devmap` template in
//! `ebpf/xsnoop.bpf.c` exactly, as the kernel demands of an inner map.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::xdp::abi::{FP_INNER_MAX_ENTRIES, FP_INNER_VALUE_SIZE};

/// `BPF_MAP_CREATE` (include/uapi/linux/bpf.h `enum bpf_cmd`).
const BPF_MAP_CREATE: libc::c_long = 0;
/// `BPF_MAP_TYPE_DEVMAP_HASH` (`enum bpf_map_type`).
const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel zero-extends the rest.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// Creates an empty inner devmap for `fp_groups`, named `xsnoop_fp_dev` (as `bpftool map`
/// shows it).
pub(crate) fn create_inner_devmap() -> io::Result<OwnedFd> {
    let mut map_name = [0u8; 16];
    for (d, s) in map_name.iter_mut().zip(b"xsnoop_fp_dev") {
        *d = *s;
    }
    let attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_DEVMAP_HASH,
        key_size: 4,
        value_size: FP_INNER_VALUE_SIZE,
        max_entries: FP_INNER_MAX_ENTRIES,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name,
    };
    // SAFETY: `attr` is a valid, initialised prefix of `union bpf_attr` that lives across the
    // call, and its size is passed; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreateAttr,
            std::mem::size_of::<MapCreateAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
