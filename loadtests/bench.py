"""Benchmark the decision endpoint over real HTTP on loopback, beside its anchors, in one run.

Each target is one uvicorn worker (uvloop, httptools) pinned to CPU 0, measured one after the
other, driven from this process pinned to CPU 1:

- ``bare``: ``loadtests/bare_app.py``, a FastAPI endpoint that returns a constant (the yardstick);
- ``naive``: ``loadtests/naive_app.py``, a FastAPI route that validates the body and makes the
  same three provider calls with aiohttp (what the service must beat while doing far more);
- ``service``: ``loan-decision serve`` with the bundled rules and models, durable decisions
  (SQLite WAL, ``synchronous=FULL``), a whitelist of ``--customers`` pre-approved customers and
  the provider simulator (on CPU 1) at ``--providers-latency-ms`` (default 0);
- ``baseline`` (with ``--baseline DIR``): the service as another checkout has it (say, the
  commit before an optimisation), set up the same way, for a before/after in one run.

With ``--database URL`` (or ``--database throwaway``: a temporary cluster on loopback,
tests/pgcluster.py) the service runs on PostgreSQL, as ``--replicas N`` replicas (replica i on
CPU i mod 2) sharing it, the load spread over their ports; each run then also records the
database's CPU time per decision (every ``postgres`` process, from ``/proc``).

Besides throughput and latency, each fixed-rate run records the worker's CPU time per request,
read from ``/proc/<pid>/stat`` (user + system, all threads), not derived from throughput.

Every request is a distinct application of a distinct whitelisted customer (its own application
id, ID number, phone, IP and device), verified, scored and approved: the whole pipeline and a
durable commit each time. For each target:

- fixed rates (open loop): requests go out on a schedule and latency is measured from the
  *scheduled* send time, so a stalled server cannot hide its queueing (no coordinated omission);
- maximum rate (closed loop): N keep-alive connections send back to back.

Writes JSON (machine, date, every run) and a PNG of latency percentiles against offered load to
loadtests/results/.

    .venv/bin/python loadtests/bench.py [--rates 100,250,500,1000] [--seconds 10] [--connections 32]
        [--targets bare,naive,service] [--baseline DIR] [--database URL|throwaway] [--replicas N] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.customers import Customers  # noqa: E402
from tests.factories import CLIENT_KEY, application  # noqa: E402

RESULTS = ROOT / "loadtests" / "results"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of durations in seconds, in µs."""
    ordered = sorted(samples)
    return {"p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
            "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1)}


def write_result(label: str, record: dict) -> Path:
    """Save a run as loadtests/results/<UTC time>-<label>.json, stamped with date and machine."""
    now = dt.datetime.now(dt.timezone.utc)
    record = {"date": now.isoformat(timespec="seconds"), "machine": machine(), **record}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{now:%Y-%m-%dT%H%M}-{label}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Requests:
    """Pre-encoded HTTP/1.1 requests, each a new application of the next customer."""

    FIELDS = {"application_id": "@A@", "id_number": "@I@", "phone": "@P@", "ip": "@N@", "device_id": "@D@"}
    counter = 0  # shared by every generator of a run: no customer applies twice

    def __init__(self, port: int, customers: Customers, path: str = "/v1/decisions") -> None:
        self.run = os.urandom(4).hex()
        self.customers = customers
        body = application("@A@", applicant={"id_number": "@I@", "phone": "@P@"},
                           device={"device_id": "@D@", "ip": "@N@"})
        template = json.dumps(body).encode().replace(b"%", b"%%")
        for marker in (b"@A@", b"@I@", b"@P@", b"@N@", b"@D@"):
            template = template.replace(b'"' + marker + b'"', b'"%s"')
        self.template = template
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\n").encode()

    def next(self) -> bytes:
        Requests.counter += 1
        n = Requests.counter
        id_number, phone, ip = self.customers.customer(n)
        tag = b"b%s-%d" % (self.run.encode(), n)
        body = self.template % (tag, id_number.encode(), phone.encode(), b"dev-" + tag, ip.encode())
        return self.prefix + b"Content-Length: %d\r\n\r\n" % len(body) + body


OUTCOMES: dict[str, int] = {}  # of the service's answers, to show what the load exercised


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    at = body.find(b'"outcome":"')
    if at >= 0:
        outcome = body[at + 11:body.index(b'"', at + 11)].decode()
        OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    return status


async def fixed_rate(target: str, reqs: Requests, ports: list[int], rate: float, seconds: float,
                     connections: int) -> dict:
    total = int(rate * seconds)
    interval = 1.0 / rate
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool: asyncio.Queue = asyncio.Queue()
    for n in range(connections):  # spread over the replicas' ports
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", ports[n % len(ports)]))
    start = time.perf_counter() + 0.05

    async def one(scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(reqs.next())
            status = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        pool.put_nowait((reader, writer))

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    return summary(target, f"fixed {rate:g}/s", latencies, statuses, elapsed, offered=rate)


async def max_rate(target: str, reqs: Requests, ports: list[int], seconds: float, connections: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def conn(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            writer.write(reqs.next())
            status = await read_response(reader)
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn(ports[n % len(ports)]) for n in range(connections)))
    return summary(target, f"max rate, {connections} connections", latencies, statuses,
                   time.perf_counter() - start)


def summary(target: str, name: str, latencies: list[float], statuses: dict[int, int], elapsed: float,
            offered: float | None = None) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=1000) if len(ms) > 1 else ms * 999

    def pct(p: float) -> float:
        return round(q[int(p * 10) - 1], 3)

    out = {"target": target, "name": name, "offered_rps": offered, "requests": len(ms),
           "throughput_per_s": round(len(ms) / elapsed, 1), "statuses": statuses,
           "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "p999_ms": pct(99.9),
           "max_ms": round(ms[-1], 3)}
    print(json.dumps(out), flush=True)
    return out


def postgres_cpu_seconds() -> float:
    """CPU time of every running PostgreSQL process (server and backends) on this machine."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split(" (", 1)[1].startswith("postgres)"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pinned(cmd: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if (os.cpu_count() or 1) > 1 else cmd


def start_server(cmd: list[str], port: int, env: dict, ready_path: str, root: Path = ROOT,
                 cpu: int = 0) -> subprocess.Popen:
    proc = subprocess.Popen(pinned(cmd, cpu), cwd=root, env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{' '.join(cmd)} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(target: str, ports: list[int], pids: list[int], customers: Customers, args: argparse.Namespace,
            database: bool = False) -> list[dict]:
    reqs = Requests(ports[0], customers)
    asyncio.run(max_rate(target + " warm-up", reqs, ports, min(2.0, args.seconds), args.connections))
    runs = []
    for rate in (float(r) for r in args.rates.split(",") if r):
        before, db_before = sum(cpu_seconds(pid) for pid in pids), postgres_cpu_seconds()
        run = asyncio.run(fixed_rate(target, reqs, ports, rate, args.seconds, args.connections))
        done = max(1, run["requests"])
        run["cpu_ms_per_request"] = round((sum(cpu_seconds(pid) for pid in pids) - before) * 1000 / done, 3)
        if database:
            run["postgres_cpu_ms_per_request"] = round((postgres_cpu_seconds() - db_before) * 1000 / done, 3)
        print(f"{target} at {rate:g}/s: {run['cpu_ms_per_request']} ms of worker CPU per request"
              + (f", {run['postgres_cpu_ms_per_request']} ms of PostgreSQL CPU" if database else ""), flush=True)
        runs.append(run)
    db_before = postgres_cpu_seconds()
    run = asyncio.run(max_rate(target, reqs, ports, args.seconds, args.connections))
    if database:
        run["postgres_cpu_ms_per_request"] = round((postgres_cpu_seconds() - db_before) * 1000 / max(1, run["requests"]), 3)
    runs.append(run)
    return runs


@contextlib.contextmanager
def service(root: Path, sim_port: int, customers: Customers, database: str = "",
            replicas: int = 1) -> Iterator[tuple[int, subprocess.Popen]]:
    """(port, process) of the service from checkout ``root`` on CPU 0: a fresh data folder, the
    customers whitelisted, the simulator on ``sim_port`` as its providers."""
    with replicated(root, sim_port, customers, database, replicas) as servers:
        yield servers[0]


@contextlib.contextmanager
def replicated(root: Path, sim_port: int, customers: Customers, database: str = "",
               replicas: int = 1) -> Iterator[list[tuple[int, subprocess.Popen]]]:
    """``replicas`` services (replica i on CPU i mod 2) on SQLite or one PostgreSQL database."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"LOAN_DATA_DIR": data_dir, "LOAN_LOG_LEVEL": "WARNING", "LOAN_DATABASE_URL": database,
               "LOAN_PROVIDERS_URL": f"http://127.0.0.1:{sim_port}", "LOAN_PROVIDER_KEY": "bench"}
        cli = [sys.executable, "-m", "service.cli"]
        if database:
            subprocess.run(cli + ["db", "migrate"], cwd=root, env={**os.environ, **env}, check=True,
                           stdout=subprocess.DEVNULL)
        subprocess.run(cli + ["whitelist", "import", str(customers.whitelist_csv(Path(data_dir) / "customers.csv"))],
                       cwd=root, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
        servers: list[tuple[int, subprocess.Popen]] = []
        try:
            for n in range(replicas):
                port = free_port()
                servers.append((port, start_server(cli + ["serve"], port, {**env, "LOAN_PORT": str(port)},
                                                   "/readyz", root, cpu=n % 2)))
            yield servers
        finally:
            for _, server in servers:
                stop(server)


def measure_service(target: str, root: Path, sim_port: int, customers: Customers,
                    args: argparse.Namespace) -> tuple[list[dict], float]:
    with replicated(root, sim_port, customers, args.database, args.replicas) as servers:
        ports, pids = [port for port, _ in servers], [server.pid for _, server in servers]
        return (measure(target, ports, pids, customers, args, database=bool(args.database)),
                max(rss_mb(pid) for pid in pids))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,250,500,1000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--targets", default="bare,naive,service", help="any of bare, naive, service")
    parser.add_argument("--baseline", type=Path, help="another checkout of the service to measure too")
    parser.add_argument("--customers", type=int, default=100_000, help="whitelisted customers to cycle through")
    parser.add_argument("--providers-latency-ms", type=float, default=0.0,
                        help="the provider simulator's latency (it runs on CPU 1)")
    parser.add_argument("--label", default="decisions")
    parser.add_argument("--database", default="", help="postgresql://… or 'throwaway'; default: SQLite")
    parser.add_argument("--replicas", type=int, default=1, help="service replicas (with --database)")
    parser.add_argument("--smoke", action="store_true", help="every target for a second at 20/s, nothing written")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database:
        parser.error("--replicas needs --database: replicas share one PostgreSQL")
    with contextlib.ExitStack() as stack:
        if args.database == "throwaway":
            from tests.pgcluster import Cluster

            cluster = Cluster().init().start()
            stack.callback(cluster.remove)
            args.database = cluster.url
        run_benchmark(args)


def run_benchmark(args: argparse.Namespace) -> None:
    if args.smoke:
        args.rates, args.seconds, args.customers, args.connections = "20", 0.5, 300, 4
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    targets = [t for t in args.targets.split(",") if t]
    customers = Customers(args.customers)
    runs: list[dict] = []
    memory: dict[str, float] = {}
    uvicorn = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
    if "bare" in targets:
        port = free_port()
        server = start_server(uvicorn + ["loadtests.bare_app:app", "--port", str(port)], port, {}, "/ping")
        try:
            runs += measure("bare", [port], [server.pid], customers, args)
        finally:
            stop(server)
    sim_port = free_port()
    simulator = subprocess.Popen(pinned(
        [sys.executable, "-m", "service.cli", "providers", "simulate", "--port", str(sim_port),
         "--latency-ms", str(args.providers_latency_ms)], 1), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        if "naive" in targets:
            port = free_port()
            server = start_server(uvicorn + ["loadtests.naive_app:app", "--port", str(port)], port,
                                  {"LOAN_PROVIDERS_URL": f"http://127.0.0.1:{sim_port}"}, "/ping")
            try:
                runs += measure("naive", [port], [server.pid], customers, args)
            finally:
                stop(server)
        OUTCOMES.clear()  # the anchors answer "approve" too
        services = [("service", ROOT)] if "service" in targets else []
        if args.baseline:
            services.insert(0, ("baseline", args.baseline.resolve()))
        for target, root in services:
            target_runs, memory[f"{target}_rss_mb"] = measure_service(target, root, sim_port, customers, args)
            runs += target_runs
    finally:
        stop(simulator)
    best = {t: max((r["throughput_per_s"] for r in runs if r["target"] == t and r["offered_rps"] is None),
                   default=None) for t in ("bare", "naive", "baseline", "service")}
    ratio = round(best["service"] / best["bare"], 3) if best["bare"] and best["service"] else None
    if ratio is not None:
        print(f"service at maximum rate: {best['service']:,.0f}/s = {ratio:.1%} of bare FastAPI "
              f"({best['bare']:,.0f}/s)")
    for anchor in ("naive", "baseline"):
        if best[anchor] and best["service"]:
            print(f"service vs {anchor}: {best['service']:,.0f}/s against {best[anchor]:,.0f}/s "
                  f"({best['service'] / best[anchor]:.2f}×)")
    if args.smoke:
        failed = [r for r in runs if set(r["statuses"]) != {200}]
        assert runs and not failed, failed
        return
    out = write_result(args.label, {
        "setup": {"server": "one uvicorn worker pinned to CPU 0 (uvloop, httptools)",
                  "providers": f"simulator on CPU 1 at {args.providers_latency_ms:g} ms",
                  "load": "this process pinned to CPU 1",
                  "durability": ("PostgreSQL synchronous_commit=on, group commit; "
                                 f"{args.replicas} replica(s), replica i on CPU i mod 2") if args.database
                  else "SQLite WAL synchronous=FULL, group commit",
                  "customers": args.customers, "seconds": args.seconds, "connections": args.connections},
        "max_rate": best, "service_share_of_bare": ratio, "service_outcomes": OUTCOMES, **memory,
        "baseline": str(args.baseline) if args.baseline else None,
        "runs": runs})
    try:
        from offline.charts import ChartUnavailable, latency_chart

        box = machine()
        latency_chart(runs, out.with_suffix(".png"),
                      f"{out.stem} on {box['cpu']} ({box['cores']} vCPU), Python {box['python']}: "
                      "one worker on one core; p50 solid, p99 dashed, p99.9 dotted")
        print(f"wrote {out.with_suffix('.png').relative_to(ROOT)}")
    except ChartUnavailable as exc:
        print(f"no chart: {exc}")


if __name__ == "__main__":
    main()
