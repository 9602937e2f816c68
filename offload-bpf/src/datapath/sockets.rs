//! The socket-level balancer's attachments: the eBPF crate's `sock`
//! programs on a cgroup's `connect`, `sendmsg`, `recvmsg` and
//! `getpeername` hooks (IPv4 and IPv6), and the sockets they sent to a backend.
//!
//! A pinned datapath pins each link as `PROGRAM@cgroup-INODE` beside its XDP
//! links; a later run swaps its own programs into those links with
//! `BPF_LINK_UPDATE`, so a restarting agent never leaves a pod's
//! `connect()` untranslated.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::pin::PinError;
use aya::programs::CgroupSockAddr;
use aya::programs::links::{CgroupAttachMode, FdLink, LinkError};
use nexthop_offload_bpf_common::service::{L3n4Key, SocketKey};

use super::{Attachment, Datapath, Error, SOCKET_PROGRAMS};

impl Datapath {
    pub(super) fn socket_program(
        &mut self,
        name: &'static str,
    ) -> Result<&mut CgroupSockAddr, Error> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or(Error::Missing(name))?
            .try_into()?)
    }

    /// Attach the socket-level balancer to the cgroup (v2) directory
    /// `cgroup`: `connect()` and `sendmsg()` of IPv4 and IPv6 sockets created in it
    /// or below it go to a backend when they name a service, and
    /// `recvmsg()` and `getpeername()` show the service again. Until
    /// [`Datapath::detach`], and until this object is dropped unless pinned.
    pub fn attach_sockets(&mut self, cgroup: &Path) -> Result<Vec<Attachment>, Error> {
        let dir = File::open(cgroup).map_err(|e| Error::Cgroup(cgroup.to_path_buf(), e))?;
        let inode = dir
            .metadata()
            .map_err(|e| Error::Cgroup(cgroup.to_path_buf(), e))?
            .ino();
        let pins = self.pins.clone();
        SOCKET_PROGRAMS
            .into_iter()
            .map(|program| {
                let prog = self.socket_program(program)?;
                let Some(pins) = &pins else {
                    let link = prog.attach(&dir, CgroupAttachMode::Single)?;
                    return Ok(Attachment::OwnedSocket { program, link });
                };
                let path = pins.join("links").join(format!("{program}@cgroup-{inode}"));
                let pin_error = |e: String| Error::Pin(path.clone(), e);
                if path.exists() {
                    let link =
                        open_pinned(&path).map_err(|e| pin_error(format!("BPF_OBJ_GET: {e}")))?;
                    update_link(link.as_fd(), prog.fd()?.as_fd())
                        .map_err(|e| pin_error(format!("BPF_LINK_UPDATE: {e}")))?;
                } else {
                    let id = prog.attach(&dir, CgroupAttachMode::Single)?;
                    let link: FdLink = prog
                        .take_link(id)?
                        .try_into()
                        .map_err(|e: LinkError| pin_error(e.to_string()))?;
                    link.pin(&path)
                        .map_err(|e: PinError| pin_error(e.to_string()))?;
                }
                Ok(Attachment::Pinned(path))
            })
            .collect()
    }

    /// Every socket the socket-level balancer sent to a backend (by cookie
    /// and backend) → the frontend it asked for.
    pub fn socket_translations(&self) -> Result<BTreeMap<SocketKey, L3n4Key>, Error> {
        self.maps.services.sockets()
    }

    /// The frontend the socket and backend of `key` stand for, if any.
    pub fn socket_translation(&self, key: &SocketKey) -> Result<Option<L3n4Key>, Error> {
        self.maps.services.socket(key)
    }
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on a unified
/// system, `/sys/fs/cgroup/unified` on a hybrid one), from
/// `/proc/self/mountinfo`; `None` when it is not mounted.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let at = left.split(' ').nth(4)?;
        (right.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(at))
    })
}

/// `BPF_OBJ_GET`: a descriptor of the object pinned at `path`.
fn open_pinned(path: &Path) -> std::io::Result<OwnedFd> {
    /// `union bpf_attr`'s `BPF_OBJ_*` member.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    const BPF_OBJ_GET: libc::c_long = 7;
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let attr = ObjGet {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
    };
    // SAFETY: the bpf syscall reads `attr` and the C string it points to.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGet,
            size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor the kernel gave this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_LINK_UPDATE`: put `program` in `link`'s place of its old one, atomically.
fn update_link(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> std::io::Result<()> {
    /// `union bpf_attr`'s `link_update` member.
    #[repr(C)]
    struct LinkUpdate {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    const BPF_LINK_UPDATE: libc::c_long = 29;
    let attr = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: the bpf syscall reads `size_of::<LinkUpdate>()` bytes of `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &attr as *const LinkUpdate,
            size_of::<LinkUpdate>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
