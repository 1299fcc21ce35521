//! A started streamlet, held by its pidfd: reaped with `waitid(P_PIDFD)`
//! when the pidfd says it exited, signalled with `pidfd_send_signal`. A pidfd
//! names one process for good, so neither can reach another process that
//! reused the pid; and nothing here waits for "any child".

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

/// `idtype_t` for `waitid` on a pidfd.
const P_PIDFD: libc::idtype_t = 3;

/// A child process owned through its pidfd.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Takes ownership of `pidfd`, a pidfd of our child `pid`. Needs a tokio
    /// runtime (the pidfd is watched by its reactor).
    pub(crate) fn new(pid: u32, pidfd: OwnedFd) -> io::Result<Child> {
        // SAFETY: an OwnedFd stays open and returns the same raw descriptor
        // until it is dropped, which happens only with the AsyncFd.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Child { pid, pidfd, status: None })
    }

    /// The process id, in the daemon's pid namespace.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the exit and reaps the child; the same status again after.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            // The pidfd turns readable when the process exits.
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Reaps the child if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        // SAFETY: siginfo_t is plain data; zeroes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG;
        // SAFETY: waitid on our own pidfd, writing into a local siginfo_t.
        let rc = unsafe { libc::waitid(P_PIDFD, self.pidfd.get_ref().as_raw_fd() as libc::id_t, &mut info, flags) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(e);
        }
        // SAFETY: waitid filled in the SIGCHLD fields, or left zeroes (no
        // child has exited yet: si_pid is 0).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let status = ExitStatus::from_raw(wait_status(code, status));
        self.status = Some(status);
        Ok(Some(status))
    }

    /// Sends `signal` through the pidfd; nothing once the child is reaped.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: pidfd_send_signal on our own pidfd, with no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Exited but not yet reaped: nothing left to signal.
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// SIGKILL, without waiting.
    pub fn start_kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }
}

impl Drop for Child {
    /// A child dropped unreaped is killed and, if it is gone already,
    /// reaped; one that takes longer stays a zombie until the daemon exits.
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.signal(libc::SIGKILL);
            let _ = self.try_wait();
        }
    }
}

/// The `wait(2)` status word for a `waitid` result.
fn wait_status(code: libc::c_int, status: libc::c_int) -> i32 {
    match code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_KILLED => status & 0x7f,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitid_results_become_exit_statuses() {
        let exited = ExitStatus::from_raw(wait_status(libc::CLD_EXITED, 3));
        assert_eq!(exited.code(), Some(3));
        let killed = ExitStatus::from_raw(wait_status(libc::CLD_KILLED, libc::SIGKILL));
        assert_eq!((killed.code(), killed.signal(), killed.core_dumped()), (None, Some(libc::SIGKILL), false));
        let dumped = ExitStatus::from_raw(wait_status(libc::CLD_DUMPED, libc::SIGSEGV));
        assert_eq!((dumped.signal(), dumped.core_dumped()), (Some(libc::SIGSEGV), true));
    }
}
