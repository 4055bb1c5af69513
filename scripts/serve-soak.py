#!/usr/bin/env python3
"""Soak `moat serve`: N mixed requests (default 10 000) over its unix socket, then the
figures a leak would move: the service's processes, descriptors and resident memory,
moat cgroups, tmpfs mounts and jails left on the host. Exits 1 if any leaked.

    scripts/serve-soak.py [--moat target/.../moat] [--requests 10000] [--clients 2]

The mix: programs that succeed, exit non-zero, die of a signal, make a denied call, run
past their CPU and wall time, their memory and their output, miss a copy-out; bodies
that are malformed, oversize or of the wrong type; and clients that hang up mid-run.
"""
import argparse, json, os, random, signal, socket, subprocess, sys, tempfile, threading, time

def count_mounts():
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)

def cgroups():
    n = 0
    for root in ("/sys/fs/cgroup",):
        for dirpath, dirnames, _ in os.walk(root):
            n += sum(1 for d in dirnames if d.startswith("moat"))
    return n

def proc_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, rss, service_processes(pid)

SOCK = None

def service_processes(pid):
    """The service's other processes: the fork server (forked twice, so no child of the
    service) and the jails it keeps ready share the service's command line, which names
    the socket; a jail of a run would show up here too, as would anything left behind."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == pid:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if SOCK.encode() in f.read():
                    out.append(int(p))
        except OSError:
            pass
    return out

def request(sock_path, body, hang_up=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sock_path)
    head = f"POST /run HTTP/1.1\r\nHost: moat\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    if hang_up:
        s.sendall(head.encode() + body)
        time.sleep(0.05)
        s.close()
        return None
    s.sendall(head.encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1])

def cmd(args, **kw):
    c = {"args": args, "env": ["PATH=/usr/bin:/bin"],
         "files": [{"content": ""}, {"name": "stdout", "max": 4096}, {"name": "stderr", "max": 4096}],
         "cpuLimit": 1_000_000_000, "clockLimit": 2_000_000_000, "memoryLimit": 128 << 20, "procLimit": 16}
    c.update(kw)
    return json.dumps({"cmd": [c]}).encode()

MIX = [
    ("ok", lambda: cmd(["/bin/echo", "hi"])),
    ("nonzero", lambda: cmd(["/bin/sh", "-c", "exit 3"])),
    ("signal", lambda: cmd(["/bin/sh", "-c", "kill -SEGV $$"])),
    ("violation", lambda: cmd(["/usr/bin/python3", "-c", "import os; os.unshare(0x10000000)"])),
    ("cpu", lambda: cmd(["/bin/sh", "-c", "while :; do :; done"], cpuLimit=50_000_000)),
    ("wall", lambda: cmd(["/bin/sleep", "5"], clockLimit=50_000_000)),
    ("memory", lambda: cmd(["/usr/bin/python3", "-c", "a = bytearray(100 << 20)"], memoryLimit=32 << 20)),
    ("output", lambda: cmd(["/usr/bin/yes"])),
    ("fork", lambda: cmd(["/bin/sh", "-c", "sleep 10 & sleep 10 & wait"], clockLimit=50_000_000)),
    ("file error", lambda: cmd(["/bin/true"], copyOut=["nothere"])),
    ("malformed", lambda: b'{"cmd": [{"args": '),
    ("wrong type", lambda: b'{"cmd": [{"args": ["/bin/true"], "cpuLimit": "1s"}]}'),
    ("oversize", lambda: b'{"cmd": [{"args": ["/bin/true"], "env": ["X=' + b"a" * (80 << 20) + b'"]}]}'),
    ("hang-up", lambda: cmd(["/bin/sleep", "3"])),
]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", default="target/x86_64-unknown-linux-gnu/release/moat")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=2)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="moat-soak-")
    sock = os.path.join(d, "moat.sock")
    global SOCK
    SOCK = sock
    srv = subprocess.Popen([a.moat, "serve", "--quiet", "--listen", f"unix:{sock}", "--max-body", "16MiB"])
    while not os.path.exists(sock):
        time.sleep(0.01)
    request(sock, cmd(["/bin/true"]))
    time.sleep(0.5)
    mounts0, cg0 = count_mounts(), cgroups()
    fds0, rss0, kids0 = proc_figures(srv.pid)
    counts, errors, lock = {}, [], threading.Lock()
    rng = random.Random(7)
    plan = [rng.choice(MIX) for _ in range(a.requests)]
    bodies = {name: make() for name, make in MIX}
    started = time.time()
    def worker(part):
        for name, _ in part:
            try:
                st = request(sock, bodies[name], hang_up=(name == "hang-up"))
            except OSError as e:
                # An oversize body is refused (413) on its header, and the connection
                # closed while the client is still sending it.
                st = "refused before read" if name == "oversize" else f"error {e}"
                if name != "oversize":
                    with lock:
                        errors.append((name, str(e)))
            with lock:
                counts[(name, st)] = counts.get((name, st), 0) + 1
    threads = [threading.Thread(target=worker, args=(plan[i::a.clients],)) for i in range(a.clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    took = time.time() - started
    time.sleep(1.0)
    fds1, rss1, kids1 = proc_figures(srv.pid)
    mounts1, cg1 = count_mounts(), cgroups()
    print(f"{a.requests} requests from {a.clients} clients in {took:.1f} s ({a.requests / took:.0f}/s)")
    for (name, st), n in sorted(counts.items(), key=lambda x: str(x)):
        print(f"  {name:<12} -> {st}: {n}")
    print(f"processes of the service (fork server, jails kept ready, anything left): {len(kids0)} -> {len(kids1)}")
    print(f"service descriptors: {fds0} -> {fds1}")
    print(f"service resident memory: {rss0} KiB -> {rss1} KiB (+{rss1 - rss0} KiB)")
    print(f"moat cgroups on the host: {cg0} -> {cg1}")
    print(f"mounts seen from here: {mounts0} -> {mounts1}")
    srv.send_signal(signal.SIGTERM)
    code = srv.wait(timeout=60)
    left = os.path.exists(sock)
    time.sleep(0.5)
    after = service_processes(srv.pid)
    print(f"exit after SIGTERM: {code}; socket left: {left}; processes left: {len(after)}")
    leaked = (len(kids1) != len(kids0) or fds1 > fds0 + 2 or rss1 - rss0 > 20 << 10
              or cg1 != cg0 or mounts1 != mounts0 or code != 0 or left or after or errors)
    if errors:
        print("client errors:", errors[:5])
    print("LEAK" if leaked else "no leak")
    sys.exit(1 if leaked else 0)

if __name__ == "__main__":
    main()
