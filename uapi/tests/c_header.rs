//! The C headers (`uapi/include/synergy/{ipi,uintr}.h`) describe the same ABI as the Rust
//! definitions, field by field (issue 40, item 10): this test compiles a C program that includes
//! them and prints every struct's size and alignment, every field's offset and size, every ioctl
//! number (from the kernel's own `_IOR`/`_IOW`/`_IOWR` macros) and every constant, and compares each
//! with the Rust side. It needs a C compiler (`cc`; `scripts/test.sh` installs gcc) and fails,
//! saying so, without one.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;
use synergy_uapi::{ipi, uintr};

/// What the C program prints: `name value` lines.
const C_PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <synergy/ipi.h>
#include <synergy/uintr.h>

#define STRUCT(s) printf(#s ".size %zu\n" #s ".align %zu\n", sizeof(struct s), _Alignof(struct s))
#define FIELD(s, f) printf(#s "." #f " %zu %zu\n", offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define NUM(n) printf(#n " %llu\n", (unsigned long long)(n))
#define STR(n) printf(#n " %s\n", n)

int main(void)
{
	STRUCT(synergy_ipi_version);
	FIELD(synergy_ipi_version, abi_version);
	FIELD(synergy_ipi_version, flags);
	STRUCT(synergy_ipi_register);
	FIELD(synergy_ipi_register, handler);
	FIELD(synergy_ipi_register, rip_slot);
	FIELD(synergy_ipi_register, cpu);
	FIELD(synergy_ipi_register, flags);
	STRUCT(synergy_ipi_cpu_apic);
	FIELD(synergy_ipi_cpu_apic, cpu);
	FIELD(synergy_ipi_cpu_apic, apic_id);
	STRUCT(synergy_ipi_send);
	FIELD(synergy_ipi_send, target);
	FIELD(synergy_ipi_send, flags);
	STRUCT(synergy_ipi_stats);
	FIELD(synergy_ipi_stats, sent);
	FIELD(synergy_ipi_stats, delivered);
	FIELD(synergy_ipi_stats, missed_not_running);
	FIELD(synergy_ipi_stats, missed_busy);
	FIELD(synergy_ipi_stats, missed_fault);
	NUM(SYNERGY_IPI_IOC_MAGIC);
	NUM(SYNERGY_IPI_ABI_VERSION);
	NUM(SYNERGY_IPI_MAX_CPUS);
	NUM(SYNERGY_IPI_SEND_BY_APIC_ID);
	NUM(SYNERGY_IPI_IOC_VERSION);
	NUM(SYNERGY_IPI_IOC_REGISTER);
	NUM(SYNERGY_IPI_IOC_UNREGISTER);
	NUM(SYNERGY_IPI_IOC_CPU_APIC_ID);
	NUM(SYNERGY_IPI_IOC_SEND);
	NUM(SYNERGY_IPI_IOC_STATS);
	STR(SYNERGY_IPI_DEVICE_PATH);

	STRUCT(synergy_uintr_version);
	FIELD(synergy_uintr_version, abi_version);
	FIELD(synergy_uintr_version, supported);
	FIELD(synergy_uintr_version, cpus_ready);
	FIELD(synergy_uintr_version, reserved);
	STRUCT(synergy_uintr_receiver);
	FIELD(synergy_uintr_receiver, handler);
	FIELD(synergy_uintr_receiver, stack_adjust);
	FIELD(synergy_uintr_receiver, flags);
	FIELD(synergy_uintr_receiver, receiver_id);
	STRUCT(synergy_uintr_sender);
	FIELD(synergy_uintr_sender, receiver_id);
	FIELD(synergy_uintr_sender, vector);
	FIELD(synergy_uintr_sender, uitt_index);
	FIELD(synergy_uintr_sender, flags);
	NUM(SYNERGY_UINTR_IOC_MAGIC);
	NUM(SYNERGY_UINTR_ABI_VERSION);
	NUM(SYNERGY_UINTR_RECEIVER_STACK_LOAD);
	NUM(SYNERGY_UINTR_MAX_STACK_SKIP);
	NUM(SYNERGY_UINTR_USER_VECTORS);
	NUM(SYNERGY_UINTR_UITT_ENTRIES);
	NUM(SYNERGY_UINTR_IOC_VERSION);
	NUM(SYNERGY_UINTR_IOC_REGISTER_RECEIVER);
	NUM(SYNERGY_UINTR_IOC_UNREGISTER_RECEIVER);
	NUM(SYNERGY_UINTR_IOC_REGISTER_SENDER);
	NUM(SYNERGY_UINTR_IOC_UNREGISTER_SENDER);
	STR(SYNERGY_UINTR_DEVICE_PATH);
	return 0;
}
"#;

/// Compiles and runs the C program; its output as a map.
fn c_side() -> BTreeMap<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("synergy-uapi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("abi.c"), dir.join("abi"));
    std::fs::write(&src, C_PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test compiles the C headers and needs a C compiler: `{cc}`: {e} (apt-get install gcc)")
        });
    assert!(
        out.status.success(),
        "the C headers do not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .output()
        .expect("run the compiled C program");
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("name value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The Rust side, in the same `name value` form (a struct's `size_align` and a field's
/// `offset size` as two numbers).
fn rust_side() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    // Fields carry two numbers (offset and size), so they are inserted directly.
    let mut field = |k: &str, off: usize, size: usize| {
        m.insert(k.to_string(), format!("{off} {size}"));
    };
    macro_rules! fields {
        ($c:literal, $t:ty, [$($f:ident: $ft:ty),* $(,)?]) => {
            field(concat!($c, ".size_align"), size_of::<$t>(), align_of::<$t>());
            $( field(concat!($c, ".", stringify!($f)), offset_of!($t, $f), size_of::<$ft>()); )*
        };
    }
    fields!("synergy_ipi_version", ipi::IpiVersion, [abi_version: u32, flags: u32]);
    fields!("synergy_ipi_register", ipi::IpiRegister, [handler: u64, rip_slot: u64, cpu: u32, flags: u32]);
    fields!("synergy_ipi_cpu_apic", ipi::IpiCpuApic, [cpu: u32, apic_id: u32]);
    fields!("synergy_ipi_send", ipi::IpiSend, [target: u32, flags: u32]);
    fields!(
        "synergy_ipi_stats",
        ipi::IpiStats,
        [sent: u64, delivered: u64, missed_not_running: u64, missed_busy: u64, missed_fault: u64]
    );
    fields!("synergy_uintr_version", uintr::UintrVersion, [abi_version: u32, supported: u32, cpus_ready: u32, reserved: u32]);
    fields!(
        "synergy_uintr_receiver",
        uintr::UintrReceiver,
        [handler: u64, stack_adjust: u64, flags: u32, receiver_id: u32]
    );
    fields!("synergy_uintr_sender", uintr::UintrSender, [receiver_id: u32, vector: u32, uitt_index: u32, flags: u32]);
    let nums: &[(&str, u64)] = &[
        ("SYNERGY_IPI_IOC_MAGIC", ipi::IOC_MAGIC.into()),
        ("SYNERGY_IPI_ABI_VERSION", ipi::ABI_VERSION.into()),
        ("SYNERGY_IPI_MAX_CPUS", ipi::MAX_CPUS.into()),
        ("SYNERGY_IPI_SEND_BY_APIC_ID", ipi::SEND_BY_APIC_ID.into()),
        ("SYNERGY_IPI_IOC_VERSION", ipi::IOC_VERSION.into()),
        ("SYNERGY_IPI_IOC_REGISTER", ipi::IOC_REGISTER.into()),
        ("SYNERGY_IPI_IOC_UNREGISTER", ipi::IOC_UNREGISTER.into()),
        ("SYNERGY_IPI_IOC_CPU_APIC_ID", ipi::IOC_CPU_APIC_ID.into()),
        ("SYNERGY_IPI_IOC_SEND", ipi::IOC_SEND.into()),
        ("SYNERGY_IPI_IOC_STATS", ipi::IOC_STATS.into()),
        ("SYNERGY_UINTR_IOC_MAGIC", uintr::IOC_MAGIC.into()),
        ("SYNERGY_UINTR_ABI_VERSION", uintr::ABI_VERSION.into()),
        (
            "SYNERGY_UINTR_RECEIVER_STACK_LOAD",
            uintr::RECEIVER_STACK_LOAD.into(),
        ),
        ("SYNERGY_UINTR_MAX_STACK_SKIP", uintr::MAX_STACK_SKIP),
        ("SYNERGY_UINTR_USER_VECTORS", uintr::USER_VECTORS.into()),
        ("SYNERGY_UINTR_UITT_ENTRIES", uintr::UITT_ENTRIES.into()),
        ("SYNERGY_UINTR_IOC_VERSION", uintr::IOC_VERSION.into()),
        (
            "SYNERGY_UINTR_IOC_REGISTER_RECEIVER",
            uintr::IOC_REGISTER_RECEIVER.into(),
        ),
        (
            "SYNERGY_UINTR_IOC_UNREGISTER_RECEIVER",
            uintr::IOC_UNREGISTER_RECEIVER.into(),
        ),
        (
            "SYNERGY_UINTR_IOC_REGISTER_SENDER",
            uintr::IOC_REGISTER_SENDER.into(),
        ),
        (
            "SYNERGY_UINTR_IOC_UNREGISTER_SENDER",
            uintr::IOC_UNREGISTER_SENDER.into(),
        ),
    ];
    for (k, v) in nums {
        m.insert(k.to_string(), v.to_string());
    }
    m.insert("SYNERGY_IPI_DEVICE_PATH".into(), ipi::DEVICE_PATH.into());
    m.insert(
        "SYNERGY_UINTR_DEVICE_PATH".into(),
        uintr::DEVICE_PATH.into(),
    );
    m
}

#[test]
fn the_c_headers_match_the_rust_abi_field_by_field() {
    let mut c = c_side();
    // The C program prints size and alignment on two lines; the Rust side pairs them.
    let keys: Vec<String> = c.keys().filter(|k| k.ends_with(".size")).cloned().collect();
    for k in keys {
        let base = k.trim_end_matches(".size").to_string();
        let size = c.remove(&k).unwrap();
        let align = c
            .remove(&format!("{base}.align"))
            .expect("an alignment line");
        c.insert(format!("{base}.size_align"), format!("{size} {align}"));
    }
    let r = rust_side();
    let mut differ = Vec::new();
    for (k, v) in &r {
        match c.get(k) {
            Some(cv) if cv == v => {}
            other => differ.push(format!("{k}: Rust {v}, C {other:?}")),
        }
    }
    for k in c.keys().filter(|k| !r.contains_key(*k)) {
        differ.push(format!("{k}: in the C header only"));
    }
    assert!(
        differ.is_empty(),
        "the C headers and the Rust ABI differ:\n{}",
        differ.join("\n")
    );
    assert!(r.len() >= 50, "compared {} items", r.len());
}
