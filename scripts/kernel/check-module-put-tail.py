#!/usr/bin/env python3
"""Checks, on the built modules, that every task_work or IPI callback that drops a module reference does
so with a tail jump: the callback's last instruction is `jmp module_put` and it calls module_put
nowhere (kmod_common/module_put_tail.rs explains why: after the last module_put, rmmod may free
the module's text). Fails before the trampolines existed: `deliver` and `teardown_work` then
ended with `call module_put` followed by their epilogue and `ret`.

Usage: check-module-put-tail.py MODULE.ko:SYMBOL_SUFFIX ...  (suffix of the mangled name)
"""
import re
import subprocess
import sys


def function_body(ko, suffix):
    out = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", ko], check=True, capture_output=True,
                         text=True).stdout
    blocks = re.split(r"\n(?=[0-9a-f]{16} <)", out)
    found = [b for b in blocks if re.match(r"[0-9a-f]{16} <[^>]*" + re.escape(suffix) + r">:", b)]
    if len(found) != 1:
        sys.exit(f"{ko}: expected one function named *{suffix}, found {len(found)}")
    return found[0]


def main():
    failed = False
    for arg in sys.argv[1:]:
        ko, suffix = arg.split(":")
        body = function_body(ko, suffix)
        # (instruction, relocation target) pairs; int3 padding after the function is ignored.
        insns = []
        for line in body.splitlines()[1:]:
            m = re.match(r"\s+[0-9a-f]+:\s+(\S.*)$", line)
            if m and not m.group(1).startswith("R_X86_64"):
                insns.append([m.group(1).split()[0], ""])
            elif m and insns:
                insns[-1][1] = m.group(1)
        while insns and insns[-1][0] == "int3":
            insns.pop()
        calls_put = [i for i in insns if i[0].startswith("call") and "module_put" in i[1]]
        last = insns[-1] if insns else ["", ""]
        if calls_put or not (last[0].startswith("jmp") and "module_put" in last[1]):
            print(f"FAIL {ko} *{suffix}: last instruction {last}, calls to module_put {len(calls_put)}")
            failed = True
        else:
            print(f"ok   {ko} *{suffix}: ends with a tail jump to module_put")
    sys.exit(1 if failed else 0)


main()
