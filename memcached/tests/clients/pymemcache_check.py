"""Python's pymemcache (Debian's python3-pymemcache) against the service: every call's answer
and every value read back is checked; prints the number of checks on success."""
import sys

from pymemcache.client.base import Client

c = Client(("127.0.0.1", int(sys.argv[1])), connect_timeout=5, timeout=10, default_noreply=False)
checks = 0


def check(got, want, what):
    global checks
    assert got == want, f"{what}: got {got!r}, want {want!r}"
    checks += 1


check(c.set("k", b"v1", flags=7), True, "set")
check(c.get("k"), b"v1", "get")
check(c.add("k", b"x"), False, "add of an existing key")
check(c.add("new", b"n"), True, "add")
check(c.replace("k", b"v2"), True, "replace")
check(c.replace("absent", b"x"), False, "replace of an absent key")
check(c.append("k", b"-tail"), True, "append")
check(c.prepend("k", b"head-"), True, "prepend")
check(c.get("k"), b"head-v2-tail", "after append and prepend")
value, cas = c.gets("k")
check(value, b"head-v2-tail", "gets")
check(c.cas("k", b"swapped", cas), True, "cas with the current unique")
check(c.cas("k", b"stale", cas), False, "cas with a stale unique")
check(c.get("k"), b"swapped", "after cas")
check(c.set("n", b"10"), True, "set counter")
check(c.incr("n", 5), 15, "incr")
check(c.decr("n", 20), 0, "decr below zero stops at 0")
check(c.incr("absent", 1), None, "incr of an absent key")
many = {f"m{i}": bytes([i]) * (i + 1) for i in range(50)}
check(c.set_many(many), [], "set_many (no failed keys)")
check(c.get_many(list(many)), many, "get_many")
big = bytes(range(256)) * 2000  # 512,000 bytes, every byte value
check(c.set("big", big), True, "set a 512 KB value")
check(c.get("big"), big, "get it back")
check(c.touch("k", 100), True, "touch")
check(c.delete("k"), True, "delete")
check(c.get("k"), None, "get after delete")
check(c.delete("k"), False, "delete of an absent key")
stats = c.stats()
check(stats[b"cmd_get"] > 0 and b"curr_items" in stats, True, "stats")
check(c.version().startswith(b"1.6"), True, "version")
check(c.flush_all(), True, "flush_all")
check(c.get("new"), None, "get after flush_all")
c.close()
print(f"pymemcache: {checks} checks passed")
