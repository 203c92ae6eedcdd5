//! With the `dpdk` feature: compiles `dpdk/shim.c` against Debian's DPDK (pkg-config libdpdk)
//! and links it. Without it, nothing to do.

fn main() {
    println!("cargo:rerun-if-changed=dpdk/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    build_dpdk_shim();
}

#[cfg(feature = "dpdk")]
fn build_dpdk_shim() {
    let pc = |arg: &str| -> String {
        let out = std::process::Command::new("pkg-config").args([arg, "libdpdk"]).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => panic!(
                "the `dpdk` feature needs DPDK's development files: `apt-get install libdpdk-dev pkg-config` \
                 (pkg-config {arg} libdpdk failed)"
            ),
        }
    };
    let cflags = pc("--cflags");
    let libs = pc("--libs");
    let mut build = cc::Build::new();
    build.file("dpdk/shim.c").warnings(false);
    let mut it = cflags.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                build.flag("-include").flag(h);
            }
        } else if let Some(dir) = f.strip_prefix("-I") {
            build.include(dir);
        } else {
            build.flag(f);
        }
    }
    build.compile("synergy_dpdk_shim");
    for l in libs.split_whitespace() {
        if let Some(lib) = l.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if let Some(dir) = l.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
        // -Wl,--as-needed is left out: the shim is a static library listed before DPDK's.
    }
}
