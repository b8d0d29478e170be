"""The cluster path as the README documents it, on a real Ray cluster with token authentication: `ray start --head`,
then a tiny search through `--address auto` and through `ray job submit`."""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from primer_search.search.store import RunStore

ROOT = pathlib.Path(__file__).resolve().parent.parent
RAY = str(pathlib.Path(sys.executable).parent / "ray")
# tiny.yaml's search at toy size: the cluster path is under test here, not the model.
TINY = [f"--set={setting}" for setting in (
    "search.num_individuals=3", "search.hurdles=0", "search.min_hurdle_steps=0", "training.budget_kind=steps",
    "training.budget=2", "training.warmup_steps=0", "data.tokenizer=bytes", "model.vocab_size=258",
    "model.num_layers=1", "model.param_band=[20000, 60000]", "data.sequence_length=16", "data.batch_tokens=128",
    "data.validation_tokens=512")] + ["--progress-every", "0"]


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _wait_for_dashboard(url: str, head: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert head.poll() is None, f"ray start exited with {head.returncode}"
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2)
            return
        except urllib.error.HTTPError:            # it answers (401 without a token): up
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {url} did not answer in {seconds} s")


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster with token authentication, in its own HOME and temporary directory; stopped (SIGTERM to
    its `ray start --block`) afterwards, leaving any other Ray on the machine alone."""
    if not os.path.exists(RAY):
        pytest.skip(f"no ray command beside {sys.executable}")
    home = tempfile.mkdtemp(prefix="ps-home-")
    temp = tempfile.mkdtemp(prefix="ps-ray-", dir="/tmp")     # short: Ray's socket paths must stay under 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=home, RAY_AUTH_MODE="token", PATH=f"{pathlib.Path(sys.executable).parent}:{env['PATH']}")
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (pathlib.Path(home) / ".ray" / "auth_token").is_file()
    gcs, dashboard, client, agent = _free_ports(4)
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                             f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
                             f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
                             "--num-cpus=2", f"--temp-dir={temp}"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for_dashboard(f"http://127.0.0.1:{dashboard}", head)
        yield {"env": env, "gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


def _done(run_dir) -> list:
    with RunStore.open(run_dir) as store:
        return store.completed()


@pytest.mark.slow
def test_a_search_joins_the_cluster_by_address_auto(cluster, tmp_path):
    """RAY_ADDRESS names the head by 127.0.0.1 and the client has the cluster's token in ~/.ray, as on the head."""
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}     # the token file is enough
    env["RAY_ADDRESS"] = cluster["gcs"]
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "primer_search.cli.main", "run", "search_configs/tiny.yaml",
                           "--run-dir", str(run_dir), "--address", "auto",
                           "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _done(run_dir)
    assert len(rows) == 3 and rows[0].status == "ok"


@pytest.mark.slow
def test_a_search_runs_as_a_ray_job(cluster, tmp_path):
    run_dir = tmp_path / "job-run"
    entrypoint = [sys.executable, "-m", "primer_search.cli.main", "run", str(ROOT / "search_configs/tiny.yaml"),
                  "--run-dir", str(run_dir), "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY]
    done = subprocess.run([RAY, "job", "submit", "--address", cluster["dashboard"], "--", *entrypoint],
                          env=cluster["env"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "succeeded" in done.stdout, (done.stdout + done.stderr)[-3000:]
    rows = _done(run_dir)
    assert len(rows) == 3 and rows[0].status == "ok"


@pytest.mark.slow
def test_a_client_without_the_token_is_told_so_in_one_line(cluster, tmp_path):
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}
    env.update(HOME=str(tmp_path), RAY_ADDRESS=cluster["gcs"])                     # no token here
    done = subprocess.run([sys.executable, "-m", "primer_search.cli.main", "run", "search_configs/tiny.yaml",
                           "--run-dir", str(tmp_path / "run"), "--address", "auto", *TINY],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "could not connect to the Ray cluster" in last and "token" in last, done.stderr
