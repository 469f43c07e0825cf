"""``collectguard relabel --engine ray --ray-address ADDRESS`` on a real, separately started cluster.

The test starts a Ray head (``ray start --head``) and a second node (``ray start --address``) as
their own processes on loopback, one CPU each, with the export cache in a temporary folder, runs
the relabel command against that address with two workers, and checks the outputs equal the
local engine's. Both nodes are stopped by process group (only the processes this test started).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api import free_port
from test_relabel import SAMPLES, assert_same_rows, make_calls, read_out, relabel, write_jsonl

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

RAY = Path(sys.executable).with_name("ray")


def _node_ports() -> list[str]:
    """Explicit free ports: two nodes on one machine must not both take a default port."""
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port"]  # fmt: skip
    return [f"--{name}={free_port()}" for name in names]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats", *_node_ports()]  # fmt: skip
    with open(log, "wb") as out:  # its own process group: stopped below without touching any other Ray
        return subprocess.Popen([str(RAY), "start", *args, *common], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            time.sleep(1)  # its children (raylet, workers) leave after it
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict[str, object]]:
    logs = tmp_path_factory.mktemp("ray_logs")
    cache = tmp_path_factory.mktemp("ray_cache")
    temp_dir = tempfile.mkdtemp(prefix="cgray", dir="/tmp")  # short: Ray's socket paths are length-limited
    # Ray ≥ 2.5x clusters use token authentication: this one gets its own token, so the test never
    # reads or writes ~/.ray/auth_token; the driver (this process) is given the same one below.
    env = {**os.environ, "COLLECTGUARD_CACHE": str(cache), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _start(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}"],
                  logs / "head.log", env)  # fmt: skip
    nodes = [head]
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray head did not start:\n{(logs / 'head.log').read_text()}")
            time.sleep(0.5)
        nodes.append(_start([f"--address={address}"], logs / "worker.log", env))
        while _alive_nodes(address, env) < 2:
            if nodes[1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray worker node did not join:\n{(logs / 'worker.log').read_text()}")
            time.sleep(1)
        yield {"address": address, "cache": cache, "env": env}
    finally:
        for proc in reversed(nodes):
            _stop(proc)


def test_relabel_on_an_existing_cluster_matches_the_local_engine(cluster, tiny_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("COLLECTGUARD_CACHE", str(cluster["cache"]))
    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(12))
    opts = ["--model", str(tiny_artifact), "--set", "relabel.chunk_calls=3", "--backend", "auto"]  # actors on int8 ONNX
    local, on_cluster = tmp_path / "local", tmp_path / "cluster"
    assert relabel(inp, SAMPLES, "--out", local, *opts) == 0
    # The command as a user runs it, in its own process: Ray reads its token settings at import.
    cli = Path(sys.executable).with_name("collectguard")
    argv = [str(cli), "relabel", str(inp), str(SAMPLES), "--out", str(on_cluster), *opts,
            "--engine", "ray", "--ray-address", cluster["address"], "--workers", "2"]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, env=cluster["env"], timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"Connecting to existing Ray cluster at address: {cluster['address']}" in run.stderr or (
        "Connecting to existing Ray cluster" in run.stderr
    )
    segs, calls, errors = read_out(on_cluster)
    ref_segs, ref_calls, ref_errors = read_out(local)
    assert len(segs) > 20
    assert_same_rows(segs, ref_segs, atol=1e-6)
    assert [c["call_id"] for c in calls] == [c["call_id"] for c in ref_calls] and errors == ref_errors
    manifest = json.loads((on_cluster / "manifest.json").read_text())
    assert (manifest["engine"], manifest["workers"], manifest["backend"]) == ("ray", 2, "auto")
    assert _alive_nodes(cluster["address"], cluster["env"]) == 2  # the cluster outlives the run


def test_a_wrong_address_or_engine_is_a_clear_error(tmp_path, tiny_artifact, capsys):
    inp = write_jsonl(tmp_path / "calls.jsonl", make_calls(1))
    assert relabel(inp, "--out", tmp_path / "a", "--model", tiny_artifact, "--ray-address", "127.0.0.1:1") == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err
    dead = f"127.0.0.1:{free_port()}"
    argv = ["--engine", "ray", "--ray-address", dead, "--model", tiny_artifact, "--set", "relabel.chunk_calls=1"]
    assert relabel(inp, "--out", tmp_path / "b", *argv) == 2
    assert f"--ray-address {dead}: cannot connect" in capsys.readouterr().err
