"""Executors: run trials `fn(payload) -> value` somewhere and hand back their results in completion order.

The search controller gives each trial an integer id and keeps W of them in flight:

    with make_executor(config.search) as executor:
        executor.submit(7, run_trial, {"dna": ..., "config": ...})
        for completion in executor.wait(timeout=10):     # [] when nothing finished within 10 s
            completion.trial_id, completion.value, completion.failure, completion.worker, completion.attempts

`fn` must be a module-level function (Ray pickles it) and `payload` JSON-like data. A trial that could not
produce a value completes with `value=None` and a one-line `failure`:
    "exception: ValueError: ..."                  fn raised (the program's fault: never retried)
    "timeout after 30 s"                          it ran longer than the per-trial limit and was killed
    "oom: OutOfMemoryError: ..."                  Ray's memory monitor killed it (never retried)
    "worker died 3 times: WorkerCrashedError: ..."   its process or node died on every attempt

Questions mid-trial: an executor made with `answer=f` calls `fn(payload, ask)`; inside the trial, `ask(question)`
(JSON-like data) blocks until the controller's `f(trial_id, question)` has answered, and returns the answer. The
search uses it to hold a trial to a hurdle threshold taken when the trial reaches the hurdle, from every record
so far. In process, `ask` calls `f` directly; on Ray it goes through a small actor the controller polls.

`InProcessExecutor` runs trials in the calling process, one per `wait()`, in submission order (deterministic;
for debugging and tests; no timeout, no retries). `RayExecutor` runs each trial as a Ray task.
This module imports no TensorFlow (Ray workers import it to run trials).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import sys
import socket
import time
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Completion:
    trial_id: int
    value: Any = None                  # fn's return value; None on failure
    failure: str | None = None         # None, or why there is no value
    worker: str | None = None          # "host:pid" of the process that ran the last attempt (None: never started)
    attempts: int = 1
    started_at: float | None = None    # time.time() when the last attempt started (on the worker)
    finished_at: float = 0.0


class Executor(Protocol):
    in_flight: int                     # submitted and not yet returned by wait()

    def submit(self, trial_id: int, fn: Callable[[dict], Any], payload: dict) -> None: ...

    def wait(self, timeout: float | None = None) -> list[Completion]: ...

    def shutdown(self) -> None: ...


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _call(fn, payload, ask=None) -> tuple[Any, str | None]:
    """(value, None), or (None, "exception: ...") when fn raised."""
    try:
        return (fn(payload) if ask is None else fn(payload, ask)), None
    except (Exception, SystemExit) as err:      # sys.exit() in a trial is its own failure, not a dead worker
        return None, f"exception: {type(err).__name__}: {err}"


class _Base:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


class InProcessExecutor(_Base):
    """Runs trials in this process, one per `wait()` call, in submission order.

    No timeout is enforced (a hung trial hangs the caller) and nothing is retried: this is the debugging path.
    """

    def __init__(self, answer: Callable[[int, Any], Any] | None = None):
        self._queue: collections.deque = collections.deque()
        self._answer = answer

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, trial_id: int, fn: Callable[[dict], Any], payload: dict) -> None:
        self._queue.append((trial_id, fn, payload))

    def wait(self, timeout: float | None = None) -> list[Completion]:
        if not self._queue:
            return []
        trial_id, fn, payload = self._queue.popleft()
        started = time.time()
        ask = None if self._answer is None else (lambda question: self._answer(trial_id, question))
        value, failure = _call(fn, payload, ask)
        return [Completion(trial_id, value, failure, _where(), 1, started, time.time())]

    def shutdown(self) -> None:
        self._queue.clear()


def _trial_stream(fn, payload, questions=None, trial_id=None):
    """The Ray task: first says where and when it started, then yields the result."""
    import ray

    start = {"worker": _where(), "started_at": time.time()}
    yield start
    ask = None if questions is None else (lambda question: ray.get(questions.ask.remote(trial_id, question)))
    value, failure = _call(fn, payload, ask)
    yield {**start, "value": value, "failure": failure, "finished_at": time.time()}


def _trial(fn, payload, questions=None, trial_id=None):
    """The same as one plain task (for Ray Client, which cannot stream): only the result."""
    return list(_trial_stream(fn, payload, questions, trial_id))[-1]


@dataclasses.dataclass
class _Question:
    trial_id: int
    question: Any
    answered: Any                       # an asyncio.Event, set once `answer` holds the reply
    answer: Any = None
    taken: bool = False                 # handed to the controller


class _Questions:
    """A Ray actor (async): trials `ask` and wait; the controller takes the open questions with `take` (which
    waits until there is one) and `reply`s."""

    def __init__(self):
        import asyncio

        self._asyncio = asyncio
        self._open: dict[int, _Question] = {}
        self._new = asyncio.Event()
        self._count = 0

    async def ask(self, trial_id, question):
        self._count += 1
        qid = self._count
        self._open[qid] = _Question(trial_id, question, self._asyncio.Event())
        self._new.set()
        await self._open[qid].answered.wait()
        return self._open.pop(qid).answer

    async def take(self):
        while True:
            fresh = [(qid, q) for qid, q in self._open.items() if not q.taken]
            if fresh:
                for _, q in fresh:
                    q.taken = True
                return [(qid, q.trial_id, q.question) for qid, q in fresh]
            self._new.clear()
            await self._new.wait()

    def reply(self, qid, answer):
        if qid in self._open:
            self._open[qid].answer = answer
            self._open[qid].answered.set()


@dataclasses.dataclass
class _Trial:
    trial_id: int
    fn: Callable
    payload: dict
    attempts: int = 0
    clock: float | None = None         # monotonic time on this machine when the attempt was seen to start
    start: dict | None = None          # the worker's start notice


def _token_mode() -> None:
    """Token authentication for this process and its children: RAY_AUTH_MODE=token, read by Ray's configuration
    when it loads; if Ray is loaded already, its cached configuration is read again (as Ray does when it turns token
    mode on for a cluster it finds by itself)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray._raylet" in sys.modules:
        from ray._raylet import Config

        Config.initialize("")


def connect_ray(address: str | None, num_cpus: int | None = None, **init_kwargs) -> None:
    """`ray.init` for a search or a retrain. Local (address None without RAY_ADDRESS, or "local"): a new instance
    with `num_cpus` CPUs, workers' TensorFlow chatter kept in Ray's logs (/tmp/ray/session_latest/logs) rather than
    on the terminal. Else the cluster at `address`; a cluster with token authentication needs its token, and when
    one is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and RAY_AUTH_MODE is unset it is
    presented (Ray itself does so only for "auto"). A failed connection is a one-line `ConnectionError` that says
    what to check."""
    local = address == "local" or (address is None and not os.environ.get("RAY_ADDRESS"))
    token = not local and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                           or os.path.isfile(os.path.expanduser("~/.ray/auth_token")))
    if token and "RAY_AUTH_MODE" not in os.environ:
        _token_mode()
    import ray

    if local:
        ray.init(num_cpus=num_cpus, **{"log_to_driver": False, **init_kwargs})
        return
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        where = address or os.environ.get("RAY_ADDRESS")
        hint = ("this client presented the token it found (RAY_AUTH_MODE=token): is it the cluster's?" if token else
                "if the cluster uses token authentication, give this client its token (~/.ray/auth_token, "
                "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) and set RAY_AUTH_MODE=token")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConnectionError(f"could not connect to the Ray cluster at {where}: {first}; {hint}") from None


class RayExecutor(_Base):
    """Each trial is a Ray task needing `cpus_per_trial` CPUs and `gpus_per_trial` GPUs.

    Connecting: `address=None` starts a local Ray instance with `num_cpus` CPUs (None: all), except that, as in
    `ray.init()`, a set RAY_ADDRESS wins (so a driver started by `ray job submit` uses its cluster);
    "auto" joins the cluster this machine belongs to, "ray://host:port" connects through Ray Client. If Ray is
    already initialized it is used as it is and left running at `shutdown()`. Other `ray.init` keywords
    (e.g. `runtime_env={"py_modules": [...]}` for a cluster without this package) go in `init_kwargs`.

    Worker processes exit after `evaluations_per_worker` trials (TensorFlow keeps memory from every model a
    process built). A trial running longer than `timeout_seconds` is killed (`ray.cancel(force=True)`) and
    completes with a timeout failure; its clock starts when the task starts on a worker, so trials queued for
    resources do not time out. Through Ray Client tasks cannot report their start, so there the clock starts
    at submission: keep the trials in flight within the cluster's free slots. A trial whose worker or node
    died is resubmitted, up to `max_retries` times; an exception raised by fn is never retried.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, evaluations_per_worker: int = 10,
                 timeout_seconds: float | None = None, max_retries: int = 2, init_kwargs: dict | None = None,
                 answer: Callable[[int, Any], Any] | None = None):
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:              # a trial's failure is recorded with its message in the run store anyway
            connect_ray(address, num_cpus, **(init_kwargs or {}))
        self._streaming = not ray.util.client.ray.is_connected()     # Ray Client cannot stream generators
        options = dict(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_calls=evaluations_per_worker,
                       max_retries=0)                                # retries are ours: counted, with a reason
        self._remote = ray.remote(**options)(_trial_stream if self._streaming else _trial)
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self._running: dict = {}                                     # ObjectRefGenerator or ObjectRef -> _Trial
        self._answer, self._questions, self._taking = answer, None, None
        if answer is not None:                                       # no CPU: it only relays questions
            self._questions = ray.remote(num_cpus=0)(_Questions).remote()
            self._taking = self._questions.take.remote()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def submit(self, trial_id: int, fn: Callable[[dict], Any], payload: dict) -> None:
        self._launch(_Trial(trial_id, fn, payload))

    def _launch(self, trial: _Trial) -> None:
        trial.attempts += 1
        trial.start = None
        trial.clock = None if self._streaming else time.monotonic()
        self._running[self._remote.remote(trial.fn, trial.payload, self._questions, trial.trial_id)] = trial

    def wait(self, timeout: float | None = None) -> list[Completion]:
        end = None if timeout is None else time.monotonic() + timeout
        done: list[Completion] = []
        while self._running and not done:
            done = self._expire()
            if done:
                break
            limits = [t - time.monotonic() for t in [end, *self._deadlines()] if t is not None]
            refs = list(self._running) + ([self._taking] if self._taking is not None else [])
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=max(0.0, min(limits)) if limits else None)
            if ready:                                                # and whatever else is ready by now
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            if self._taking is not None and self._taking in ready:
                ready.remove(self._taking)
                self._reply()
            done = [c for c in map(self._take, ready) if c is not None]
            if end is not None and time.monotonic() >= end:
                break
        return sorted(done, key=lambda c: c.finished_at)

    def _reply(self) -> None:
        """Answer the open questions and wait for the next ones."""
        for qid, trial_id, question in self._ray.get(self._taking):
            self._questions.reply.remote(qid, self._answer(trial_id, question))
        self._taking = self._questions.take.remote()

    def _deadlines(self):
        if self.timeout_seconds is not None:
            yield from (t.clock + self.timeout_seconds for t in self._running.values() if t.clock is not None)

    def _expire(self) -> list[Completion]:
        """Kill the trials past their time limit."""
        if self.timeout_seconds is None:
            return []
        now, done = time.monotonic(), []
        for ref, trial in list(self._running.items()):
            if trial.clock is not None and now - trial.clock >= self.timeout_seconds:
                self._ray.cancel(ref, force=True)
                del self._running[ref]
                done.append(self._failed(trial, f"timeout after {self.timeout_seconds:g} s"))
        return done

    def _failed(self, trial: _Trial, failure: str) -> Completion:
        start = trial.start or {}
        return Completion(trial.trial_id, None, failure, start.get("worker"), trial.attempts,
                          start.get("started_at"), time.time())

    def _take(self, ref) -> Completion | None:
        """The ready item of a trial: its start notice (None), its result, or the error that ended it."""
        ray = self._ray
        trial = self._running[ref]
        try:
            item = ray.get(next(ref) if self._streaming else ref)
        except ray.exceptions.RayTaskError as err:                   # raised in the task, outside fn
            del self._running[ref]                                    # (e.g. a value that cannot be pickled)
            return self._failed(trial, f"exception: {_one_line(err.cause)}")
        except ray.exceptions.OutOfMemoryError as err:              # killed by Ray's memory monitor
            del self._running[ref]
            return self._failed(trial, f"oom: {_one_line(err)}")
        except ray.exceptions.RayError as err:                       # the worker, its node or the object died
            del self._running[ref]
            if trial.attempts <= self.max_retries:
                log.warning("trial %d: attempt %d on %s failed (%s); retrying", trial.trial_id, trial.attempts,
                            (trial.start or {}).get("worker", "a worker"), _one_line(err))
                self._launch(trial)
                return None
            return self._failed(trial, f"worker died {trial.attempts} times: {_one_line(err)}")
        if "finished_at" not in item:                                # the start notice
            trial.start, trial.clock = item, time.monotonic()
            return None
        del self._running[ref]
        return Completion(trial.trial_id, item["value"], item["failure"], item["worker"], trial.attempts,
                          item["started_at"], item["finished_at"])

    def shutdown(self) -> None:
        """Kill the trials still in flight; stop Ray if this executor started it."""
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
        if self._questions is not None:
            self._ray.kill(self._questions)
            self._questions = self._taking = None
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def make_executor(search, answer: Callable[[int, Any], Any] | None = None) -> InProcessExecutor | RayExecutor:
    """The executor a `SearchConfig` (`config.search`) asks for; `answer` answers trials' questions."""
    if search.executor == "in_process":
        return InProcessExecutor(answer=answer)
    return RayExecutor(address=search.address, num_cpus=search.num_cpus, cpus_per_trial=search.cpus_per_trial,
                       gpus_per_trial=search.gpus_per_trial, evaluations_per_worker=search.evaluations_per_worker,
                       timeout_seconds=search.trial_timeout_seconds, max_retries=search.max_retries, answer=answer)
