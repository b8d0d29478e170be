import collections
import os
import sys
import time

import pytest

from primer_search.config import config_from_dict
from primer_search.search.executors import Completion, InProcessExecutor, RayExecutor, make_executor


# Trial functions: module level, so Ray can pickle them (by value: see `ray_executor` below).

def echo(payload):
    return payload["x"]


def bad_program(payload):
    raise ValueError("bad program")


def sleep_then_echo(payload):
    time.sleep(payload["seconds"])
    return payload["x"]


def pid(payload):
    time.sleep(0.05)
    return os.getpid()


def crash_once(payload):
    """Kills its worker on the first attempt (a marker file remembers it), succeeds on the second."""
    marker = payload["marker"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "survived"


def crash(payload):
    os._exit(1)


def asking(payload, ask):
    """Asks two questions mid-trial and returns the answers."""
    return [ask({"n": n}) for n in payload["questions"]]


def collect(executor, n, timeout=60):
    """The next n completions, in the order wait() gave them."""
    done, end = [], time.monotonic() + timeout
    while len(done) < n and time.monotonic() < end:
        done += executor.wait(timeout=end - time.monotonic())
    assert len(done) == n, done
    return done


# -- in process -------------------------------------------------------------------------------------------

def test_in_process_runs_one_trial_per_wait_in_submission_order():
    with InProcessExecutor() as executor:
        for i in (3, 1, 2):
            executor.submit(i, echo, {"x": i * 10})
        assert executor.in_flight == 3
        first = executor.wait()
        assert [(c.trial_id, c.value, c.failure, c.attempts) for c in first] == [(3, 30, None, 1)]
        assert executor.in_flight == 2
        rest = executor.wait() + executor.wait()
        assert [c.value for c in rest] == [10, 20]
        assert executor.wait(timeout=0) == [] and executor.in_flight == 0
        assert first[0].worker.endswith(f":{os.getpid()}")
        assert first[0].started_at <= first[0].finished_at


def test_in_process_exception_is_a_failure():
    with InProcessExecutor() as executor:
        executor.submit(0, bad_program, {})
        executor.submit(1, echo, {"x": 1})
        failed, ok = executor.wait() + executor.wait()
    assert failed.value is None and failed.failure == "exception: ValueError: bad program"
    assert ok.value == 1 and ok.failure is None


def test_in_process_trials_ask_the_controller():
    asked = []

    def answer(trial_id, question):
        asked.append((trial_id, question["n"]))
        return question["n"] * 10

    with InProcessExecutor(answer=answer) as executor:
        executor.submit(4, asking, {"questions": [1, 2]})
        [done] = executor.wait()
    assert done.value == [10, 20] and asked == [(4, 1), (4, 2)]


def test_make_executor_follows_the_search_config(ray_session):
    search = config_from_dict({"search": {"executor": "in_process"}}).search
    assert isinstance(make_executor(search), InProcessExecutor)
    search = config_from_dict({"search": {"evaluations_per_worker": 3, "trial_timeout_seconds": 5,
                                          "max_retries": 1}}).search
    with make_executor(search) as executor:
        assert isinstance(executor, RayExecutor)
        assert executor.timeout_seconds == 5 and executor.max_retries == 1
    assert ray_session.is_initialized()            # an executor leaves a Ray it did not start running


# -- Ray ----------------------------------------------------------------------------------------------------

@pytest.fixture
def ray_executor(ray_session):
    """RayExecutor(**options) on the session's Ray; shut down after the test."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this test module
    executors = []

    def make(**options):
        executors.append(RayExecutor(**options))
        return executors[-1]

    yield make
    for executor in executors:
        executor.shutdown()


def test_ray_results_come_in_completion_order(ray_executor):
    executor = ray_executor()
    executor.submit(0, sleep_then_echo, {"seconds": 1.5, "x": "slow"})
    executor.submit(1, sleep_then_echo, {"seconds": 0.1, "x": "fast"})
    assert executor.in_flight == 2
    done = collect(executor, 2)
    assert [(c.trial_id, c.value) for c in done] == [(1, "fast"), (0, "slow")]
    assert all(c.failure is None and c.attempts == 1 and c.started_at <= c.finished_at for c in done)
    assert done[0].worker != done[1].worker                     # they ran at the same time
    assert executor.in_flight == 0 and executor.wait(timeout=0) == []


def test_ray_exception_is_a_failure_without_retry(ray_executor):
    executor = ray_executor(max_retries=2)
    executor.submit(5, bad_program, {})
    [done] = collect(executor, 1)
    assert done == Completion(5, None, "exception: ValueError: bad program", done.worker, 1, done.started_at,
                              done.finished_at)
    assert done.worker is not None


def test_ray_trials_ask_the_controller_mid_trial(ray_executor):
    asked = []

    def answer(trial_id, question):
        asked.append((trial_id, question["n"]))
        return f"{trial_id}:{question['n']}"

    executor = ray_executor(answer=answer)
    executor.submit(0, asking, {"questions": [1, 2, 3]})
    executor.submit(1, asking, {"questions": [7]})
    done = sorted(collect(executor, 2), key=lambda c: c.trial_id)
    assert [c.value for c in done] == [["0:1", "0:2", "0:3"], ["1:7"]] and all(c.failure is None for c in done)
    assert sorted(asked) == [(0, 1), (0, 2), (0, 3), (1, 7)]


def test_ray_dead_worker_is_retried(ray_executor, tmp_path):
    executor = ray_executor(max_retries=2)
    executor.submit(0, crash_once, {"marker": str(tmp_path / "attempted")})
    [done] = collect(executor, 1)
    assert (done.value, done.failure, done.attempts) == ("survived", None, 2)


def test_ray_worker_that_always_dies_fails_after_the_retries(ray_executor):
    executor = ray_executor(max_retries=2)
    executor.submit(0, crash, {})
    [done] = collect(executor, 1)
    assert done.value is None and done.attempts == 3
    assert done.failure.startswith("worker died 3 times: WorkerCrashedError: ")


def test_ray_hung_trial_times_out_and_frees_its_worker(ray_executor):
    executor = ray_executor(timeout_seconds=2)
    for i in range(2):                                          # both CPUs of the session
        executor.submit(i, sleep_then_echo, {"seconds": 1000, "x": i})
    executor.submit(2, echo, {"x": "ran"})                      # runs only once a hung trial is killed
    start = time.monotonic()
    done = collect(executor, 3, timeout=30)
    assert [c.failure for c in done[:2]] == ["timeout after 2 s"] * 2
    assert all(c.worker is not None and c.value is None for c in done[:2])
    assert (done[2].trial_id, done[2].value, done[2].failure) == (2, "ran", None)
    assert 2 <= time.monotonic() - start < 15


def test_ray_queued_trial_does_not_time_out(ray_executor):
    executor = ray_executor(timeout_seconds=2.5)
    for i in range(4):                                          # 2 run, 2 wait 1.5 s for a CPU: 3 s from submission
        executor.submit(i, sleep_then_echo, {"seconds": 1.5, "x": i})
    done = collect(executor, 4)
    assert sorted(c.value for c in done) == [0, 1, 2, 3] and all(c.failure is None for c in done)


def test_ray_workers_are_recycled(ray_executor):
    executor = ray_executor(evaluations_per_worker=2)
    pids = []
    for i in range(6):
        executor.submit(i, pid, {})
        [done] = collect(executor, 1)
        pids.append(done.value)
    counts = collections.Counter(pids)
    assert len(counts) >= 3 and max(counts.values()) <= 2, pids


def _fake_init(calls, error=None):
    def init(address=None, **kwargs):
        calls.append((address, kwargs, os.environ.get("RAY_AUTH_MODE")))
        if error is not None:
            raise error
    return init


def test_connecting_to_a_cluster_presents_a_token_it_finds(tmp_path, monkeypatch):
    import ray

    from primer_search.search.executors import connect_ray

    calls = []
    monkeypatch.setattr(ray, "init", _fake_init(calls))
    monkeypatch.setenv("HOME", str(tmp_path))                  # no ~/.ray/auth_token
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    connect_ray(None, 2)
    assert calls[-1] == (None, {"num_cpus": 2, "log_to_driver": False}, None)     # local: no token involved
    connect_ray("10.0.0.1:6379")
    assert calls[-1] == ("10.0.0.1:6379", {}, None)            # no token at hand: Ray's default
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("ab" * 32)
    connect_ray("10.0.0.1:6379")
    assert calls[-1] == ("10.0.0.1:6379", {}, "token")         # presented, as Ray does only for "auto"


def test_a_failed_connection_is_one_line_that_names_the_token(tmp_path, monkeypatch):
    import ray

    from primer_search.search.executors import connect_ray

    monkeypatch.setattr(ray, "init", _fake_init([], ConnectionError("Failed to connect to Ray cluster at 10.0.0.1\n"
                                                                   "more lines")))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConnectionError) as err:
        connect_ray("10.0.0.1:6379")
    message = str(err.value)
    assert "\n" not in message and message.startswith("could not connect to the Ray cluster at 10.0.0.1:6379: Failed")
    assert "set RAY_AUTH_MODE=token" in message
