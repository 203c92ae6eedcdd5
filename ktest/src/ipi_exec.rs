//! `ipi-exec`: a registration does not survive `execve` (issue 40, item 1).
//!
//! A child opens `/dev/synergy_ipi` *without* `O_CLOEXEC`, registers its only thread (pinned)
//! with a handler address of this program, and execs this same program as `ipi-exec-helper`,
//! which inherits the descriptor. The helper, in the new image (a new address-space layout: the
//! old handler address means nothing there), sends to its own CPU through the inherited
//! descriptor. Before the fix the send succeeded and the delivery redirected the new program to
//! the old address (the helper died of SIGSEGV, or ran whatever lay there); now the send fails
//! with ESTALE, the stale registration is gone (the helper registers on the same CPU again), and
//! no delivery reaches the new image. The parent judges by the helper's exit status and output.

use crate::exec_case;
use crate::ioctl;
use crate::ipi::{reg, send_to, slot_addr};
use crate::pin_to;
use synergy_uapi::ipi;

/// Never called: its address is what the pre-exec image registers.
extern "C" fn old_image_handler() {
    std::process::abort();
}

/// `ipi-exec`.
pub fn exec_inherited() -> Result<(), String> {
    let report = exec_case::run("ipi-exec", || {
        pin_to(0)?;
        let fd = exec_case::open_inheritable(ipi::DEVICE_PATH, "kmod_ipi")?;
        let (r, answer) = reg(fd, old_image_handler as *const () as u64, slot_addr(), 0);
        r.map_err(|e| format!("register before exec: errno {e}"))?;
        Ok(vec!["ipi-exec-helper".into(), fd.to_string(), answer.cpu.to_string()])
    })?;
    println!("ipi-exec: {report}");
    Ok(())
}

/// `ipi-exec-helper <fd> <cpu>`: runs in the exec'd image with the inherited descriptor.
pub fn exec_helper(args: &[String]) -> Result<(), String> {
    let [fd, cpu] = args else {
        return Err("usage: ipi-exec-helper <fd> <cpu> (started by ipi-exec)".into());
    };
    let fd: i32 = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
    let cpu: u32 = cpu.parse().map_err(|_| format!("bad cpu {cpu:?}"))?;
    match send_to(fd, cpu) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("send through the inherited descriptor: expected ESTALE, got errno {e}")),
        Ok(_) => {
            return Err("send through a registration made before exec succeeded: the new program can be redirected to the old one's handler address".into())
        }
    }
    // The stale registration was dropped: this image may register on the same CPU.
    let (r, answer) = reg(fd, exec_helper as *const () as u64, slot_addr(), 0);
    r.map_err(|e| format!("register after exec: errno {e} (the stale registration still holds the CPU?)"))?;
    if answer.cpu != cpu {
        return Err(format!("registered on CPU {} after exec, pinned to {cpu}", answer.cpu));
    }
    ioctl(fd, ipi::IOC_UNREGISTER, 0).map_err(|e| format!("unregister: errno {e}"))?;
    println!("send after exec refused with ESTALE; the stale registration was dropped and CPU {cpu} registered again");
    Ok(())
}
