#!/usr/bin/env python3
"""A dashboard's range queries: relayhub's Prometheus API against
VictoriaMetrics, the same points in both, in the same run.

    python3 crates/bench/prometheus_api.py [--relayhub target/release/relayhub]
        [--robots 200] [--minutes 60] [--rounds 10]

Starts VictoriaMetrics (Debian `victoria-metrics`) and relayhub on fresh
temporary data, pairs ROBOTS robots, writes MINUTES of seed 002's 15 series
every 10 s for each (line protocol: to relayhub as the robots, to
VictoriaMetrics with the same robot/hostname tags), then asks both every
query of deploy/grafana/robots.json with `$robot` = `.+` over the MINUTES,
step 15 s, ROUNDS times, one client after the other. Prints a Markdown
row per system: queries, queries/s, p50 and p99 ms, and whether the two
answered the same series.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def call(method, url, body=None, headers=None, timeout=120):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if isinstance(body, dict):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
            return answer.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as refused:
        raw = refused.read()
        return refused.code, raw.decode(errors="replace")


def wait(url, what, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    sys.exit(f"{what} did not start")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines_for(robot, end, minutes):
    out = []
    start = end - minutes * 60
    received = 1000 * robot
    for i in range(minutes * 6):
        t = start + i * 10
        wave = (i * 7 + robot * 3) % 13
        out.append(f"cpu,cpu=cpu-total usage_idle={60 + wave * 2.5},usage_user={20 + wave},usage_system={5 + wave / 4} {t}")
        out.append(f"mem used_percent={40 + wave},available={4000000 - i * 1000}i,total=8000000i {t}")
        out.append(f"disk,path=/ used_percent={30 + robot % 7},free={9000 - i}i {t}")
        out.append(f"temp,sensor=cpu_thermal temp={45 + wave / 2} {t}")
        out.append(f"system load1={wave / 10},load5=0.5,load15=0.25,uptime={86400 + i * 10}i {t}")
        received += 700 + (i % 5) * 100
        out.append(f"net,interface=eth0 bytes_recv={received}i,bytes_sent={300 * i}i {t}")
    return out


def with_robot(line, name):
    head, rest = line.split(" ", 1)
    return f"{head},robot={name},hostname={name} {rest}"


def dashboard_queries():
    dashboard = json.loads((ROOT / "deploy/grafana/robots.json").read_text())
    found = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "expr" and isinstance(x, str):
                    found.append(x.replace("$robot", ".+"))
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(dashboard)
    return found


def run_queries(base, token, queries, start, end, rounds):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    times, shapes = [], {}
    began = time.perf_counter()
    for _ in range(rounds):
        for q in queries:
            params = urllib.parse.urlencode({"query": q, "start": start, "end": end, "step": 15})
            t = time.perf_counter()
            status, body = call("GET", f"{base}/api/v1/query_range?{params}", headers=headers)
            times.append((time.perf_counter() - t) * 1000)
            assert status == 200, (base, q, status, body)
            shapes[q] = sorted(json.dumps(r["metric"], sort_keys=True) for r in body["data"]["result"])
    total = time.perf_counter() - began
    times.sort()
    return {
        "queries": len(times),
        "qps": len(times) / total,
        "p50": statistics.median(times),
        "p99": times[max(0, int(len(times) * 0.99) - 1)],
        "shapes": shapes,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relayhub", default=str(ROOT / "target/release/relayhub"))
    parser.add_argument("--robots", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--log", help="relayhub's log to this file (RELAYHUB_LOG=warn,relayhub_fleet::prometheus=debug shows each query's read/decode/evaluate ms)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="prom-bench-"))
    vm_port, rh_port = free_port(), free_port()
    vm = subprocess.Popen(
        ["victoria-metrics", f"-storageDataPath={tmp / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}", "-search.latencyOffset=0s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    binary, data = args.relayhub, str(tmp / "rh")
    subprocess.run([binary, "--data", data, "license", "create", "--number", "LIC-B"], check=True, capture_output=True)
    subprocess.run(
        [binary, "--data", data, "user", "create", "--license", "LIC-B", "--email", "b@bench.example", "--name", "B", "--role", "admin"],
        input=b"bench passphrase\n",
        check=True,
        capture_output=True,
    )
    # One machine pairs every robot: the per-address pairing limit is lifted.
    env = dict(os.environ, RELAYHUB_FLEET__PAIRINGS_PER_ADDRESS="1000000")
    log = open(args.log, "w") if args.log else subprocess.DEVNULL
    rh = subprocess.Popen(
        [binary, "--data", data, "serve", "--listen", f"127.0.0.1:{rh_port}"],
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        rh_base, vm_base = f"http://127.0.0.1:{rh_port}", f"http://127.0.0.1:{vm_port}"
        wait(f"{rh_base}/healthz", "relayhub")
        wait(f"{vm_base}/health", "VictoriaMetrics")
        _, login = call("POST", f"{rh_base}/api/auth/login", {"email": "b@bench.example", "password": "bench passphrase"})
        access = login["access_token"]
        end = int(time.time()) // 10 * 10 - 30
        loading = time.perf_counter()
        for n in range(args.robots):
            name = f"r{n}"
            status, started = call("POST", f"{rh_base}/api/pair", {"hostname": name})
            assert status == 201, started
            code, secret = started["code"], started["poll_secret"]
            call("POST", f"{rh_base}/api/pair/{code}/confirm", headers={"Authorization": f"Bearer {access}"})
            _, paired = call("GET", f"{rh_base}/api/pair/{code}/status", headers={"x-pair-secret": secret})
            lines = lines_for(n, end, args.minutes)
            status, body = call("POST", f"{rh_base}/api/v2/write?precision=s", "\n".join(lines).encode(), {"Authorization": f"Token {paired['token']}"})
            assert status == 204, (status, body)
            status, body = call("POST", f"{vm_base}/write?precision=s", "\n".join(with_robot(l, name) for l in lines).encode())
            assert status == 204, (status, body)
        points = args.robots * args.minutes * 6 * 15
        print(f"loaded {points} points for {args.robots} robots in {time.perf_counter() - loading:.0f} s", flush=True)
        _, token = call("POST", f"{rh_base}/api/users/me/tokens", {"name": "bench"}, {"Authorization": f"Bearer {access}"})
        deadline = time.time() + 60
        while time.time() < deadline:
            _, series = call("GET", f"{vm_base}/api/v1/series?match[]=cpu_usage_idle&start={end - 3600}")
            if isinstance(series, dict) and len(series["data"]) >= args.robots:
                break
            time.sleep(0.5)
        queries = dashboard_queries()
        start = end - args.minutes * 60
        results = {
            "relayhub": run_queries(f"{rh_base}/prometheus", token["token"], queries, start, end, args.rounds),
            "VictoriaMetrics": run_queries(f"{vm_base}/prometheus", None, queries, start, end, args.rounds),
        }
        same = results["relayhub"]["shapes"] == results["VictoriaMetrics"]["shapes"]
        print(f"| system | queries | queries/s | p50 ms | p99 ms | same series |")
        print("|---|---:|---:|---:|---:|---|")
        for system, r in results.items():
            print(f"| {system} | {r['queries']} | {r['qps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {'yes' if same else 'no'} |")
        ratio = results["relayhub"]["qps"] / results["VictoriaMetrics"]["qps"]
        print(f"relayhub/VictoriaMetrics queries/s: {ratio:.2f}x")
    finally:
        for child in (rh, vm):
            child.terminate()
            child.wait(timeout=30)


if __name__ == "__main__":
    main()
