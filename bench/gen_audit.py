#!/usr/bin/env python3
"""Writes a synthetic audit file for bench/report_bench.sh: lines as the proxy writes them (the
fields of audit/fields.hpp, in its order), from many VMs to many destinations, with denials, report-
mode passes, long tunnels with progress lines (some never finished, as after a crash) and
forwarding connections whose requests share a connection id.

    bench/gen_audit.py --lines 1000000 --out audit.jsonl [--vms 200] [--destinations 5000] [--seed 1]
                       [--spread]

--spread sends every VM to any destination: the worst case for memory (a (VM, destination)
pair per line, nearly), where the report's maps are as large as they get.

Deterministic for a seed. Fast: each line is a template filled with %-formatting, about 1 s per
300,000 lines.
"""

import argparse
import random
import sys
import time

START_MS = 1796083200000  # 2026-12-01T00:00:00Z
SPAN_MS = 7 * 86400 * 1000  # a week

SHARED_DESTINATIONS = 50  # hosts every VM reaches
OWN_DESTINATIONS = 40     # hosts of one VM's own (of --destinations in all)
SUFFIXES = ["blob.core.windows.net", "queue.core.windows.net", "table.core.windows.net",
            "blob.storage.azure.net", "backup.windowsazure.com", "blob.core.usgovcloudapi.net"]
DENIED = [("host_not_allowed", "egress.hosts", 403), ("port_not_allowed", "egress.ports", 403),
          ("address_not_allowed", "address:private", 403), ("client_rate_limit", "clients.limits", 429)]

LINE = ('{"time":"%s","record":"%s","connection_id":"%s","vm":"%s","client_ip":"%s","client_port":%d,'
        '"method":"%s","host":"%s","port":%d,"path":"%s","resolved":"%s","decision":"%s","reason":"%s",'
        '"rule":"%s","sni":"%s","alpn":%s,"status":%d,"bytes_up":%d,"bytes_down":%d,"connect_ms":%d,'
        '"duration_ms":%d,"close_reason":"%s"}\n')


def rfc3339(ms: int, cache: dict) -> str:
    seconds, millis = divmod(ms, 1000)
    prefix = cache.get(seconds)
    if prefix is None:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        if len(cache) > 100000:
            cache.clear()
        cache[seconds] = prefix
    return "%s.%03dZ" % (prefix, millis)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--destinations", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spread", action="store_true", help="every VM to any destination")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    vms = [("vm-%03d" % i, "10.0.%d.%d" % (i // 250, 4 + i % 250)) for i in range(args.vms)]
    hosts = ["acct%05d.%s" % (i, SUFFIXES[i % len(SUFFIXES)]) for i in range(args.destinations)]
    # Each VM backs up to a few accounts of its own and fetches from endpoints every VM uses
    # (agent downloads, login): what a virtual network's traffic looks like.
    shared = hosts[:SHARED_DESTINATIONS]
    own = {vm: rng.sample(hosts, OWN_DESTINATIONS) for vm, _ in vms}
    ports = [443, 443, 443, 8443, 80]
    times: dict = {}
    step = SPAN_MS / max(args.lines, 1)
    open_tunnels: list = []  # (connection id, vm, host, port, up, down) of long tunnels
    sequence = 0
    written = 0
    with open(args.out, "w", buffering=1 << 20) as out:
        while written < args.lines:
            now = START_MS + int(written * step)
            t = rfc3339(now, times)
            vm, ip = vms[int(rng.expovariate(4.0 / len(vms))) % len(vms)]  # a few busy VMs, a long tail
            roll = rng.random()
            if roll < 0.05 and open_tunnels:
                # a long tunnel's progress line, or its end
                k = rng.randrange(len(open_tunnels))
                cid, tvm, tip, host, port, up, down = open_tunnels[k]
                up += rng.randrange(1 << 20, 64 << 20)
                down += rng.randrange(1 << 16, 1 << 20)
                if rng.random() < 0.8:
                    open_tunnels[k] = (cid, tvm, tip, host, port, up, down)
                    out.write(LINE % (t, "progress", cid, tvm, tip, 40000, "CONNECT", host, port, "",
                                      "20.60.1.1", "allow", "host_allowed", "catalog:azure-backup", host,
                                      '["http/1.1"]', 200, up, down, 3, 300000, ""))
                else:
                    open_tunnels.pop(k)
                    out.write(LINE % (t, "final", cid, tvm, tip, 40000, "CONNECT", host, port, "",
                                      "20.60.1.1", "allow", "host_allowed", "catalog:azure-backup", host,
                                      '["http/1.1"]', 200, up, down, 3, 900000, "completed"))
                written += 1
                continue
            sequence += 1
            cid = "1796083200000-%d" % sequence
            if args.spread:
                host = hosts[int(rng.expovariate(8.0 / len(hosts))) % len(hosts)]
            elif rng.random() < 0.3:
                host = shared[int(rng.expovariate(4.0 / len(shared))) % len(shared)]
            else:
                host = own[vm][int(rng.expovariate(4.0 / OWN_DESTINATIONS)) % OWN_DESTINATIONS]
            port = ports[sequence % len(ports)]
            if roll < 0.15:
                reason, rule, status = DENIED[sequence % len(DENIED)]
                denied_host = "evil%d.example.com" % (sequence % 300) if reason == "host_not_allowed" else host
                out.write(LINE % (t, "final", cid, vm, ip, 40000 + sequence % 20000, "CONNECT", denied_host, port, "",
                                  "", "deny", reason, rule, "", "[]", status, 0, 0, -1, 1, "rejected"))
            elif roll < 0.17 and len(open_tunnels) < 2000:
                open_tunnels.append((cid, vm, ip, host, 443, 0, 0))
                out.write(LINE % (t, "progress", cid, vm, ip, 40000, "CONNECT", host, 443, "", "20.60.1.1",
                                  "allow", "host_allowed", "catalog:azure-backup", host, '["http/1.1"]', 200,
                                  rng.randrange(1 << 20), rng.randrange(1 << 16), 3, 300000, ""))
            elif roll < 0.22:
                # plain http: requests on one connection, one line each
                for n in range(min(3, args.lines - written)):
                    out.write(LINE % (t, "final", cid, vm, ip, 40000, "GET", host, 80, "/vhd/x%d?sig=REDACTED" % n,
                                      "20.60.1.1", "allow", "host_allowed", "catalog:azure-backup", "", "[]", 200,
                                      rng.randrange(200, 800), rng.randrange(1000, 1 << 20), 2, 40, "completed"))
                    written += 1
                continue
            else:
                decision = "report" if roll < 0.23 else "allow"
                out.write(LINE % (t, "final", cid, vm, ip, 40000 + sequence % 20000, "CONNECT", host, port, "",
                                  "20.60.1.1", decision, "host_allowed", "catalog:azure-backup", host,
                                  '["h2","http/1.1"]', 200, rng.randrange(500, 1 << 22), rng.randrange(500, 1 << 24),
                                  rng.randrange(1, 40), rng.randrange(10, 60000), "completed"))
            written += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
