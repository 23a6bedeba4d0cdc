"""Run a study: every (problem, method, seed) run, stored as it happens, resumable, local or on Dask.

The runner knows no kind: the study's kind (`gpvi.studies.kinds`) says how many evaluations a run
stores and how a run executes. The driver is the only process that writes the store. Workers run
whole runs and send back the kind's messages (`("eval", run_id, rows, checkpoint)` per iteration,
or `("metrics", run_id, values)`), then `("end", run_id, error)`; the driver commits each message
in one transaction. Re-running the same study resumes: finished runs are skipped; an unfinished or
failed run restarts from its committed evaluations and checkpoint (for BO, `BayesOpt.restore`),
and, since every random draw of iteration t is seeded by (seed, t), it continues exactly as the
uninterrupted run would have.

Executors:
- "local": `workers` processes (spawned, one torch thread each unless ``threads`` says otherwise);
  with one worker the runs execute in the driver process. A worker killed by the OS (out of
  memory, a crash) is replaced: its run is retried once, then stored as failed; the others go on.
- "dask": runs are submitted to a Dask distributed cluster (``scheduler`` address, or a
  `LocalCluster` of ``workers`` processes); messages come back through a `distributed.Queue`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpvi.progress import bar_delay, progress_bar, show_progress
from gpvi.studies.kinds import Emit, get_kind
from gpvi.studies.spec import StudySpec, load_spec
from gpvi.studies.store import Run, Store


@dataclass
class StudyOutcome:
    """What `run_study` did: the store's path and how many runs ended done / failed this time."""

    db: Path
    done: int
    failed: int
    skipped: int


def default_db(study_file: str | Path) -> Path:
    """``<study>.sqlite`` next to the study file."""
    return Path(study_file).with_suffix(".sqlite")


def run_study(
    study: str | Path | StudySpec,
    db: str | Path | None = None,
    *,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    threads: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyOutcome:
    """Run (or resume) every unfinished run of a study; see the module docstring.

    ``progress``: a bar over the study's runs (done / total, the runs done earlier included), moved
    as each run ends, with the evaluations stored and the failures so far; with any executor. True,
    False, or None for `gpvi.progress.show_progress`'s rule (a terminal or Jupyter, never under
    pytest; ``GPVI_PROGRESS=0``/``1`` where not given). ``log`` receives a line per finished run
    when no bar is drawn (default: stderr).
    """
    spec = study if isinstance(study, StudySpec) else load_spec(study)
    if db is None:
        if isinstance(study, StudySpec):
            raise ValueError("Pass `db` when running a StudySpec object.")
        db = default_db(study)
    if executor not in ("local", "dask"):
        raise ValueError(f"`executor` must be 'local' or 'dask', got {executor!r}.")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive int, got {workers!r}.")
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    kind = get_kind(spec.kind)
    problems = {p.label: p for p in spec.problems}
    methods = {m.name: m for m in spec.methods}
    with Store(db) as store:
        meta = store.meta()
        if meta.get("study") not in (None, spec.name):
            raise ValueError(f"{db} holds study {meta['study']!r}, not {spec.name!r}; use another --db.")
        store.set_meta(study=spec.name, kind=spec.kind, spec=spec.text, **({} if meta else {"created": _now()}))
        store.ensure_runs(spec.name, spec.run_keys(), spec.budget, kind.optimal_values(spec))
        expected = {p.label: kind.expected_evaluations(spec, p) for p in spec.problems}
        runs = [
            r for r in store.runs(spec.name) if r.status != "done" and r.problem in problems and r.method in methods
        ]
        runs.sort(key=lambda r: (r.seed, r.run_id))  # seed-major: a partial study covers every cell
        skipped = len(store.runs(spec.name, status="done"))

        def task_of(r: Run) -> dict:  # a task that resumes from what the store holds now
            return _task(spec, r, problems[r.problem], methods[r.method], store, threads, workers, expected[r.problem])

        tasks = [task_of(r) for r in runs]
        driver = _Driver(store, spec, tasks, log, progress, skipped)
        if not tasks:
            log(f"{spec.name}: all {skipped} runs are done.")
        elif executor == "dask":
            _run_dask(driver, tasks, workers, scheduler)
        elif workers == 1:
            for task in tasks:
                driver.started(task["run_id"])
                execute_run(task, driver.handle)
        else:
            by_id = {r.run_id: r for r in runs}
            _run_local_pool(driver, tasks, workers, lambda run_id: task_of(by_id[run_id]))
        driver.close()
        return StudyOutcome(Path(db), driver.done, driver.failed, skipped)


# -- the driver: the only writer --------------------------------------------------------------
class _Driver:
    def __init__(
        self,
        store: Store,
        spec: StudySpec,
        tasks: list[dict],
        log: Callable,
        progress: bool | None,
        skipped: int = 0,
    ):
        self.store, self.spec, self.log = store, spec, log
        self.labels = {
            t["run_id"]: f"{t['problem']['label']} / {t['method']['name']} / seed {t['seed']}" for t in tasks
        }
        self.remaining = {t["run_id"] for t in tasks}
        self.done = self.failed = self.evaluations = 0
        self.last: dict[int, dict] = {}
        show = show_progress(progress) and bool(tasks)  # runs done / all the study's runs, earlier ones included
        self.bar = progress_bar(
            skipped + len(tasks), show, f"study {spec.name}", delay=bar_delay(progress), unit="run", initial=skipped
        )

    def started(self, run_id: int) -> None:
        self.store.mark(run_id, "running")

    def handle(self, message: tuple) -> None:
        kind, run_id = message[0], message[1]
        if kind == "eval":
            rows, checkpoint = message[2], message[3]
            self.store.add_evaluations(run_id, rows, checkpoint)
            self.last[run_id] = rows[-1]
            self.evaluations += len(rows)
            self._show(0)
        elif kind == "metrics":
            self.store.add_metrics(run_id, message[2])
        elif kind == "start":
            self.started(run_id)
        elif kind == "end":
            self._end(run_id, message[2])

    def _show(self, runs_ended: int) -> None:
        """Move the bar by ``runs_ended`` runs and refresh its counts (drawn once the bar's delay passed)."""
        if self.bar is None:
            return
        counts = {"evaluations": self.evaluations} if self.evaluations else {}
        if self.failed:
            counts["failed"] = self.failed
        self.bar.set_postfix(counts, refresh=False)
        self.bar.update(runs_ended)

    def _end(self, run_id: int, error: str | None) -> None:
        self.remaining.discard(run_id)
        label = self.labels.get(run_id, str(run_id))
        if error is None:
            self.store.mark(run_id, "done")
            self.done += 1
            last = self.last.get(run_id)
            detail = ""
            if last is not None and last.get("regret") is not None:
                detail = f": regret {last['regret']:.4g} after {last['iteration']} iterations"
            elif last is not None:
                detail = f": best {last['best']:.4g} after {last['iteration']} iterations"
            self.write(f"done   {label}{detail}")
        else:
            self.store.mark(run_id, "failed", error)
            self.failed += 1
            last_line = error.strip().splitlines()[-1] if error.strip() else "unknown error"
            self.write(f"FAILED {label}: {last_line} (traceback stored; `gpvi study report` lists it)")
        self._show(1)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            self.log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- tasks ------------------------------------------------------------------------------------
def _task(
    spec: StudySpec,
    run: Run,
    problem: Any,
    method: Any,
    store: Store,
    threads: int | None,
    workers: int,
    expected: int,
) -> dict:
    kind = get_kind(spec.kind)
    evaluations = store.evaluations(run.run_id) if kind.stores_evaluations else []
    state = store.state(run.run_id)
    return {
        "kind": spec.kind,
        "run_id": run.run_id,
        "seed": run.seed,
        "budget": spec.budget,
        "options": dict(spec.options),
        "problem": dataclasses.asdict(problem),
        "method": dataclasses.asdict(method),
        "evaluations": evaluations,
        "checkpoint": None if state is None else state[1],
        "threads": threads
        if threads is not None
        else max(1, (os.cpu_count() or 1) // workers)
        if workers > 1
        else None,
        "expected": max(expected, len(evaluations)),
    }


# -- what a worker runs -----------------------------------------------------------------------
def execute_run(task: dict, emit: Emit) -> None:
    """Run one task to its end, emitting messages; never raises (a failure becomes an "end" message)."""
    run_id = task["run_id"]
    try:
        if task["threads"]:
            torch.set_num_threads(task["threads"])
        get_kind(task["kind"]).run(task, emit)
    except Exception:  # stored and reported; the study goes on
        emit(("end", run_id, traceback.format_exc()))
        return
    emit(("end", run_id, None))


# -- local process pool -----------------------------------------------------------------------
def _local_worker(inbox: Any, outbox: Any) -> None:
    """A worker process: run the tasks the driver sends until it sends None."""
    while (task := inbox.recv()) is not None:
        outbox.send(("start", task["run_id"]))
        execute_run(task, outbox.send)


@dataclass
class _Worker:
    process: Any
    inbox: Any  # the driver sends tasks here
    outbox: Any  # and receives the worker's messages here
    run_id: int | None = None  # the run it is executing


def _run_local_pool(driver: _Driver, tasks: list[dict], workers: int, refresh: Callable[[int], dict]) -> None:
    """Run the tasks on `workers` spawned processes, each with its own pipes, surviving killed workers.

    The driver waits on every worker's pipe and process sentinel at once. A worker that dies (the
    OOM killer, SIGKILL, a segfault) is noticed by its sentinel and knows its run: that run gets one
    more try, resuming from its committed evaluations (`refresh`), and is stored as failed if its
    worker dies again; the dead worker is replaced and the other runs go on undisturbed.
    """
    ctx = mp.get_context("spawn")
    queue = list(tasks)
    deaths: dict[int, int] = {}
    pool: list[_Worker] = []

    def spawn() -> _Worker:
        task_read, task_write = ctx.Pipe(duplex=False)
        msg_read, msg_write = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_local_worker, args=(task_read, msg_write), daemon=True)
        process.start()
        task_read.close()  # the worker's ends: `outbox` reads EOF once the worker is gone
        msg_write.close()
        return _Worker(process, task_write, msg_read)

    def feed(worker: _Worker) -> None:
        while queue and queue[0]["run_id"] not in driver.remaining:
            queue.pop(0)
        if queue:
            try:
                worker.inbox.send(queue[0])
            except OSError:  # the worker is gone (its sentinel says so next); the task waits in line
                return
            worker.run_id = queue.pop(0)["run_id"]

    def receive(worker: _Worker) -> bool:
        """Handle one message; False at EOF (the worker is gone)."""
        try:
            message = worker.outbox.recv()
        except (EOFError, OSError):
            return False
        driver.handle(message)
        if message[0] == "end" and message[1] == worker.run_id:
            worker.run_id = None
            feed(worker)
        return True

    try:
        for _ in range(min(workers, len(tasks))):
            pool.append(spawn())
            feed(pool[-1])
        while driver.remaining:
            if not pool:  # cannot happen: every remaining run is in line or on a worker
                raise RuntimeError(f"no worker left for {len(driver.remaining)} unfinished runs")
            ready = set(mp_connection.wait([w.outbox for w in pool] + [w.process.sentinel for w in pool]))
            for worker in list(pool):
                alive = receive(worker) if worker.outbox in ready else True
                if not alive or worker.process.sentinel in ready:  # it died (workers only exit when told)
                    while alive and worker.outbox.poll():  # what it sent before it died
                        alive = receive(worker)
                    worker.process.join(timeout=5)
                    pool.remove(worker)
                    _bury(driver, worker, deaths, queue, refresh)
                    if queue:
                        pool.append(spawn())
                        feed(pool[-1])
    finally:
        for worker in pool:
            if worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.inbox.send(None)
        for worker in pool:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.terminate()


_MAX_DEATHS = 2
_DIED = (
    "WorkerDied: the worker process running this run died {} times (exit code {}: killed by the OS or the "
    "out-of-memory killer, or it crashed); rerun the study to try again from the last committed evaluation."
)


def _bury(driver: _Driver, worker: _Worker, deaths: dict[int, int], queue: list[dict], refresh: Callable) -> None:
    """A worker died: retry its run once (first in line), or store it as failed."""
    run_id = worker.run_id
    if run_id is None or run_id not in driver.remaining:
        return
    deaths[run_id] = deaths.get(run_id, 0) + 1
    code = worker.process.exitcode
    if deaths[run_id] >= _MAX_DEATHS:
        driver.handle(("end", run_id, _DIED.format(deaths[run_id], code)))
    else:
        driver.write(f"the worker running {driver.labels.get(run_id, run_id)} died (exit code {code}); retrying it")
        queue.insert(0, refresh(run_id))


# -- Dask -------------------------------------------------------------------------------------
def _dask_entry(task: dict, queue_name: str) -> None:
    from distributed import Queue

    q = Queue(queue_name)
    q.put(("start", task["run_id"]))
    execute_run(task, q.put)


def _run_dask(driver: _Driver, tasks: list[dict], workers: int, scheduler: str | None) -> None:
    try:
        from distributed import Client, LocalCluster, Queue
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("The dask executor needs `pip install gpvi[distributed]`.") from err
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        name = f"gpvi-{uuid.uuid4().hex}"
        messages = Queue(name, client=client)
        futures = {t["run_id"]: client.submit(_dask_entry, t, name, pure=False) for t in tasks}
        while driver.remaining:
            try:
                driver.handle(messages.get(timeout=0.5))
            except Exception as err:  # distributed raises a TimeoutError subclass on an empty queue
                if "Timeout" not in type(err).__name__:
                    raise
                for run_id, future in futures.items():
                    if future.status == "error" and run_id in driver.remaining:
                        tb = "".join(traceback.format_exception(future.exception()))
                        driver.handle(("end", run_id, tb))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["StudyOutcome", "default_db", "execute_run", "run_study"]
