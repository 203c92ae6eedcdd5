//! `uintr-exec`: a kmod_uintr receiver does not survive `execve` (issue 40, item 1), run on the
//! fake backend (a test build loaded with `fake_hardware=1`).
//!
//! A child opens `/dev/synergy_uintr` *without* `O_CLOEXEC`, registers its only thread as a
//! receiver, and execs this program as `uintr-exec-helper`, which inherits the descriptor. The
//! helper first sleeps (a context switch: `sched_in` then finds the thread exec'd and marks its
//! old state defunct), and then, through the inherited descriptor, registers a sender for the old
//! receiver and registers itself as a receiver: both must answer ESTALE, the README's promise.
//! Before the fix the sender's lookup skipped the defunct receiver and answered ENOENT, so the
//! new program learnt only "no such receiver" for its own process's registration.

use crate::exec_case;
use crate::ioctl;
use synergy_uapi::uintr;

/// Never called: its address is what the pre-exec image registers.
extern "C" fn old_image_handler() {
    std::process::abort();
}

/// `uintr-exec`.
pub fn exec_inherited() -> Result<(), String> {
    let report = exec_case::run("uintr-exec", || {
        let fd = exec_case::open_inheritable(uintr::DEVICE_PATH, "kmod_uintr")?;
        let mut r = uintr::UintrReceiver {
            handler: old_image_handler as *const () as u64,
            stack_adjust: 128,
            flags: 0,
            receiver_id: 0,
        };
        ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize).map_err(|e| {
            format!("register a receiver before exec: errno {e} (kmod_uintr loaded with fake_hardware=1?)")
        })?;
        Ok(vec!["uintr-exec-helper".into(), fd.to_string(), r.receiver_id.to_string()])
    })?;
    println!("uintr-exec: {report}");
    Ok(())
}

/// `uintr-exec-helper <fd> <receiver id>`: runs in the exec'd image with the inherited descriptor.
pub fn exec_helper(args: &[String]) -> Result<(), String> {
    let [fd, id] = args else {
        return Err("usage: uintr-exec-helper <fd> <receiver id> (started by uintr-exec)".into());
    };
    let fd: i32 = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
    let id: u32 = id.parse().map_err(|_| format!("bad receiver id {id:?}"))?;
    // A context switch, so that sched_in has seen the exec (and marked the old state defunct).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut s = uintr::UintrSender { receiver_id: id, vector: 1, uitt_index: 0, flags: 0 };
    match ioctl(fd, uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("a sender for the pre-exec receiver: expected ESTALE, got errno {e}")),
        Ok(_) => return Err("a sender registered for a receiver of the pre-exec program".into()),
    }
    let mut r =
        uintr::UintrReceiver { handler: exec_helper as *const () as u64, stack_adjust: 128, flags: 0, receiver_id: 0 };
    match ioctl(fd, uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize) {
        Err(e) if e == libc::ESTALE => {}
        Err(e) => return Err(format!("a receiver through the inherited descriptor: expected ESTALE, got errno {e}")),
        Ok(_) => return Err("registered a receiver over the pre-exec program's state".into()),
    }
    println!("after exec and a context switch, a sender for the old receiver and a new receiver both got ESTALE");
    Ok(())
}
