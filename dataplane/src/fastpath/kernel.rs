//! The system calls aya 0.14 has no wrapper for: creating a standalone inner DEVMAP_HASH (aya
//! has no `DevMapHash::create`, and `aya-obj`, which `MapData::create` needs, is not a
//! dependency of this crate; the parameters match the `fp_devmap` template in
//! `ebpf/xsnoop.bpf.c` exactly, as the kernel demands of an inner map), and batched inserts
//! into the list map `fp_lists`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// Creates an empty inner devmap (a replication list) for `fp_lists`, named `xsnoop_fp_dev` (as `bpftool map`
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

/// `BPF_MAP_UPDATE_BATCH` (`enum bpf_cmd`).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn batch<K: Copy>(
    cmd: libc::c_long,
    map: BorrowedFd<'_>,
    keys: &[K],
    values: Option<&[u32]>,
) -> (usize, io::Result<()>) {
    let Ok(count) = u32::try_from(keys.len()) else {
        return (0, Err(io::Error::from_raw_os_error(libc::E2BIG)));
    };
    let Ok(map_fd) = u32::try_from(map.as_raw_fd()) else {
        return (0, Err(io::Error::from_raw_os_error(libc::EBADF)));
    };
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.map_or(0, |v| v.as_ptr() as u64),
        count,
        map_fd,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` points at `keys` (and `values`, as long as `keys`), both alive across the
    // call; the kernel reads them and writes only `attr.count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    let done = usize::try_from(attr.count).unwrap_or(0);
    if rc < 0 {
        (done, Err(io::Error::last_os_error()))
    } else {
        (keys.len(), Ok(()))
    }
}

/// Inserts `ids[i]` → inner map `fds[i]` into `fp_lists` (an ARRAY_OF_MAPS) with one system
/// call: the kernel waits for one RCU grace period per map-in-map syscall
/// (`maybe_wait_bpf_programs`, once per batch since Linux 6.8), ~10 ms measured here, so the
/// whole pool batch costs one. Returns how many were applied (in order) and the error that
/// stopped it, if any.
pub(crate) fn lists_update_batch(
    map: BorrowedFd<'_>,
    ids: &[u32],
    fds: &[u32],
) -> (usize, io::Result<()>) {
    if fds.len() != ids.len() {
        return (0, Err(io::Error::from_raw_os_error(libc::EINVAL)));
    }
    batch(BPF_MAP_UPDATE_BATCH, map, ids, Some(fds))
}
