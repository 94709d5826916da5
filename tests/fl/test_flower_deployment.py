"""The Flower run as separate processes on this machine: a SuperLink, two SuperNodes and ``flwr run``
(127.0.0.1 only; every process is bounded in time and stopped at the end)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="Flower is the optional extra privbox[flower]")
pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from privbox.core.safetensors_io import read_privbox_file
from privbox.fl.flower.deploy import write_flower_app, write_superlink_connection

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, seconds: float = 90.0) -> None:
    """Wait until something listens on 127.0.0.1:port (bounded)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


@pytest.mark.slow  # three long-lived processes and two rounds: ~2-3 min on two cores
def test_superlink_and_two_supernodes_run_two_rounds(tmp_path):
    link, node0, node1 = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    table = "clients=[{name: high-risk, num_images: 1, batch_size: 1, invert: true}, {name: site-8x4, num_images: 8, batch_size: 4}]"
    write_flower_app(tmp_path / "app", "fl", ["fl.rounds=2", "audit.start_round=1", "audit.frequency=1",
                                              "audit.attack.iterations=5", table], str(tmp_path / "out"))
    write_superlink_connection(tmp_path / "home", f"127.0.0.1:{link}")
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("superlink", "node0", "node1")]
    procs = []
    try:
        procs.append(subprocess.Popen([_tool("flower-superlink"), "--insecure", "--port", str(link), "--database",
                                       str(tmp_path / "state.db")], env=env, cwd=tmp_path, stdout=logs[0], stderr=subprocess.STDOUT))
        _wait_for(link)
        for i, port in enumerate((node0, node1)):
            procs.append(subprocess.Popen(
                [_tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}", "--port", str(port),
                 "--node-config", f"partition-id={i}"], env=env, cwd=tmp_path, stdout=logs[i + 1], stderr=subprocess.STDOUT))
        for port in (node0, node1):
            _wait_for(port)
        time.sleep(5)  # let both nodes register with the SuperLink
        run = subprocess.run([_tool("flwr"), "run", str(tmp_path / "app"), "privbox", "--stream"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=420)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
    final_path = tmp_path / "out" / "final_model.safetensors"
    assert final_path.exists(), "the ServerApp wrote no model:\n" + run.stdout[-4000:]
    final, header = read_privbox_file(final_path, "privbox.FLModel")
    assert header["rounds"] == 2 and final
    assert (tmp_path / "out" / "clients" / "audit" / "round_001" / "high-risk" / "rdlv.json").exists()
