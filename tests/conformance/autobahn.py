"""Runs the Autobahn|Testsuite against every face of ferrows and summarizes the verdicts.

For each agent (see agents.py) two jobs run: the fuzzingclient against the agent's echo
server, and the fuzzingserver against the agent's client driver. Jobs run in parallel.
Passing means no case ends FAILED, WRONG CODE or UNIMPLEMENTED.

    python tests/conformance/autobahn.py [--cases '1.*,2.*'] [--agent NAME] [--outdir DIR]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agents import AGENTS, Agent

ROOT = Path(__file__).resolve().parents[2]
INSTALL = Path(__file__).with_name("install_autobahn.sh")
# Every section: 1-10 (RFC 6455; section 8 does not exist), 12 and 13 (permessage-deflate;
# section 11 does not exist). Every agent offers and accepts permessage-deflate by default.
SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]
BAD_VERDICTS = {"FAILED", "WRONG CODE", "UNIMPLEMENTED"}
JOB_TIMEOUT = 2700  # seconds, per job (six run at once)


def wstest_path() -> str:
    """Installs the suite if needed (a failure is a failed run, never a skip)."""
    result = subprocess.run(
        ["bash", str(INSTALL)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"install_autobahn.sh failed ({result.returncode}): {result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port: nothing to await
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def read_results(outdir: Path, agent: str) -> dict[str, dict]:
    index = json.loads((outdir / "index.json").read_text())
    return index[agent]


def run_fuzzingclient(wstest: str, agent: Agent, cases: list[str], outdir: Path) -> dict:
    """Tests the agent's server."""
    port = free_port()
    server = subprocess.Popen([*agent.server, str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, 30)
        spec = {
            "outdir": str(outdir),
            "servers": [{"agent": agent.name, "url": f"ws://127.0.0.1:{port}"}],
            "cases": cases,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        spec_file = outdir / "fuzzingclient.json"
        spec_file.write_text(json.dumps(spec))
        subprocess.run(
            [wstest, "-m", "fuzzingclient", "-s", str(spec_file)],
            cwd=outdir,
            stdout=subprocess.DEVNULL,
            timeout=JOB_TIMEOUT,
            check=True,
        )
    finally:
        stop(server)
    return read_results(outdir, agent.name)


def run_fuzzingserver(wstest: str, agent: Agent, cases: list[str], outdir: Path) -> dict:
    """Tests the agent's client."""
    port = free_port()
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": str(outdir),
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingserver.json"
    spec_file.write_text(json.dumps(spec))
    log = (outdir / "fuzzingserver.log").open("w")
    server = subprocess.Popen(
        [wstest, "-m", "fuzzingserver", "-s", str(spec_file), "-u", "0"],
        cwd=outdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, server, 60)
        subprocess.run(
            [*agent.client, f"ws://127.0.0.1:{port}", agent.name],
            timeout=JOB_TIMEOUT,
            check=True,
        )
    finally:
        stop(server)
        log.close()
    return read_results(outdir, agent.name)


def summarize(title: str, results: dict[str, dict]) -> list[str]:
    """Prints a per-section table and the non-OK cases; returns the failing case ids."""
    sections: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    notes, failures = [], []
    for case, result in results.items():
        verdicts = {result["behavior"], result["behaviorClose"]}
        worst = next((v for v in ("FAILED", "WRONG CODE", "UNIMPLEMENTED") if v in verdicts), None)
        verdict = worst or result["behavior"]
        sections[case.split(".")[0]][verdict] += 1
        if verdict != "OK":
            notes.append(f"  {case}: {result['behavior']} / close {result['behaviorClose']}")
        if worst:
            failures.append(case)
    if not results:
        print(f"\n== {title}: no case ran")
        return ["none"]
    order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE", "FAILED"]
    print(f"\n== {title}: {len(results)} cases")
    print("  section " + " ".join(f"{v:>13}" for v in order))
    totals: collections.Counter = collections.Counter()
    for section in sorted(sections, key=int):
        counts = sections[section]
        totals.update(counts)
        print(f"  {section:>7} " + " ".join(f"{counts[v]:>13}" for v in order))
    print("  total   " + " ".join(f"{totals[v]:>13}" for v in order))
    for line in sorted(notes, key=lambda n: [int(p) for p in n.split(":")[0].split(".")]):
        print(line)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(SECTIONS))
    parser.add_argument("--agent", action="append", help="run only these agents")
    parser.add_argument("--outdir", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    agents = [a for a in AGENTS if not args.agent or a.name in args.agent]
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="ferrows-autobahn-"))
    wstest = wstest_path()
    jobs = {}
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(agents)) as pool:
        for agent in agents:
            for mode, run in (("server", run_fuzzingclient), ("client", run_fuzzingserver)):
                job_dir = outdir / agent.name / mode
                job_dir.mkdir(parents=True, exist_ok=True)
                tester = "fuzzingclient" if mode == "server" else "fuzzingserver"
                title = f"{agent.name} {mode} (tested by {tester})"
                jobs[title] = pool.submit(run, wstest, agent, cases, job_dir)
    failed = False
    for title, job in jobs.items():
        try:
            failures = summarize(title, job.result())
        except Exception as exc:  # a crashed job is a failed run
            print(f"\n== {title}: job failed: {exc!r}")
            failed = True
            continue
        failed = failed or bool(failures)
    print(f"\nreports in {outdir}; {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
