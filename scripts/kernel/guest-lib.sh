# Shared by scripts/kernel/qemu-test.sh (CI) and scripts/kernel/bochs-uintr.sh (by hand): how the
# guest's initramfs is built and how its console log is judged. Source it after scripts/lib.sh,
# from the repository root.

# build_static_binaries DIR: builds the static `synergy` and `synergy-ktest`, and the runtime's
# integration tests that the guest scripts run, and copies them into DIR (created if needed),
# the tests as `synergy-test-<name>`, with the guest helpers (scripts/kernel/guest/bin/). Used
# for the guest's initramfs and by scripts/validate-hardware.sh on a real machine.
build_static_binaries() {
  local dest=$1 tests t
  log "building static guest binaries"
  local static=(--release --target x86_64-unknown-linux-gnu --target-dir target/static)
  local bindir=target/static/x86_64-unknown-linux-gnu/release
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet "${static[@]}" -p synergy-cli -p synergy-ktest
  mapfile -t tests < <(RUSTFLAGS="-C target-feature=+crt-static" \
    cargo test --quiet --no-run "${static[@]}" -p synergy --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"] \
       and m["target"]["name"] in ("preemption", "stress", "alloc_lock", "policies", "regions", "soak",
                                   "live_state", "compiler_interrupts"):
        print(m["target"]["name"], m["executable"])')
  [ ${#tests[@]} -eq 8 ] || { log "expected 8 runtime test executables, found: ${tests[*]}"; exit 1; }
  mkdir -p "$dest"
  cp "$bindir/synergy" "$bindir/synergy-ktest" scripts/kernel/guest/bin/* "$dest/"
  for t in "${tests[@]}"; do
    cp "${t#* }" "$dest/synergy-test-${t%% *}"
  done
}

# build_initramfs DIR KDIR SCRIPT...: fills DIR (emptied first) with busybox, the guest's init,
# the SCRIPTs as its tests, synergy's modules built against KDIR, and the binaries of
# build_static_binaries.
build_initramfs() {
  local dir=$1 kdir=$2
  shift 2
  apt_install busybox-static cpio gzip
  local modules
  mapfile -t modules < <(KDIR="$kdir" SYNERGY_TEST_BUILD=1 scripts/kernel/modules.sh)
  [ ${#modules[@]} -gt 0 ] || { log "no kernel module was built"; exit 1; }
  rm -rf "$dir"
  mkdir -p "$dir"/{bin,modules,tests}
  build_static_binaries "$dir/bin"
  cp /bin/busybox "$dir/bin/busybox"
  cp scripts/kernel/guest/init "$dir/init"
  chmod +x "$dir/init"
  cp "$@" "$dir/tests/"
  cp "${modules[@]}" "$dir/modules/"
}

# pack_initramfs DIR OUT: a gzip'd newc cpio archive of DIR.
pack_initramfs() {
  (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) > "$2"
}

# fail_on_splat LOG: exits with an error if the kernel printed an oops, BUG, WARNING, lockdep
# report, hung task, RCU stall or sanitizer report.
fail_on_splat() {
  local splat='(BUG:|WARNING:|Oops|general protection fault|Kernel panic|kernel BUG|Call Trace:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|rcu: INFO|UBSAN:|KASAN:)'
  if grep -Eq "$splat" "$1"; then
    log "FAIL: the kernel reported a problem:"
    grep -En "$splat" "$1" | head -20 >&2
    exit 1
  fi
}

# extract_guest_files LOG DEST: writes the files the guest printed between
# SYNERGY-FILE-BEGIN/END markers (benchmark results) into DEST, skipping interleaved kernel lines.
extract_guest_files() {
  python3 - "$1" "$2" <<'PY'
import os, sys
log, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
name, lines = None, []
for line in open(log, errors="replace"):
    line = line.rstrip("\r\n")
    if line.startswith("SYNERGY-FILE-BEGIN "):
        name, lines = os.path.basename(line.split(" ", 1)[1]), []
    elif line.startswith("SYNERGY-FILE-END ") and name:
        open(os.path.join(dest, name), "w").write("\n".join(lines) + "\n")
        print(f"[synergy] guest result: {dest}/{name}", file=sys.stderr)
        name = None
    elif name is not None and not line.startswith("["):
        lines.append(line)
PY
}
