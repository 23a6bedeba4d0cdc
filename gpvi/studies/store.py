"""The crash-safe SQLite store of a study.

One file per study (stdlib `sqlite3`, WAL journal). The driver process is the only writer: each
evaluation is committed as it arrives, together with the warm-start state of the run, in one
transaction, so a killed study loses at most the evaluations in flight and resumes exactly.

Tables:
    meta(key, value)                      study name, kind, the TOML text, creation time
    runs(run_id, study, problem, method, seed, status, budget, optimal_value, error,
         started, finished)               one row per (problem, method, seed); status is
                                          'pending' | 'running' | 'done' | 'failed'
    evaluations(run_id, idx, iteration, x, y, y_true, best, regret, fit_time, acq_time,
                eval_time, n_train)       one row per evaluated point (x as a JSON list);
                                          iteration 0 is the initial design
    run_state(run_id, iteration, state)   the warm-start state after the run's latest iteration
    metrics(run_id, name, value)          scalar results of non-BO runs (RMSE, NLPD, ...)
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    study TEXT NOT NULL, problem TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    budget INTEGER, optimal_value REAL, error TEXT, started REAL, finished REAL,
    UNIQUE (study, problem, method, seed)
);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    idx INTEGER NOT NULL, iteration INTEGER NOT NULL,
    x TEXT NOT NULL, y REAL, y_true REAL, best REAL, regret REAL,
    fit_time REAL, acq_time REAL, eval_time REAL, n_train INTEGER,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS run_state (
    run_id INTEGER PRIMARY KEY REFERENCES runs(run_id), iteration INTEGER NOT NULL, state BLOB
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(run_id), name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, name)
);
"""

EVALUATION_FIELDS = (
    "idx",
    "iteration",
    "x",
    "y",
    "y_true",
    "best",
    "regret",
    "fit_time",
    "acq_time",
    "eval_time",
    "n_train",
)


@dataclass(frozen=True)
class RunKey:
    """What identifies a run within a study."""

    problem: str
    method: str
    seed: int


@dataclass
class Run:
    """A row of `runs`."""

    run_id: int
    study: str
    problem: str
    method: str
    seed: int
    status: str
    budget: int | None
    optimal_value: float | None
    error: str | None

    @property
    def key(self) -> RunKey:
        return RunKey(self.problem, self.method, self.seed)


class Store:
    """A study's SQLite database. Open it with `Store(path)`; it creates the schema if missing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database connection (also done on leaving ``with Store(path) as store:``)."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on leaving the block, rolled back on an error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta -------------------------------------------------------------------------------------
    def set_meta(self, **values: str) -> None:
        """Store key/value strings of the study (e.g. its spec), replacing existing keys."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    def meta(self) -> dict[str, str]:
        """The key/value strings stored by `set_meta`."""
        return {r["key"]: r["value"] for r in self._db.execute("SELECT key, value FROM meta")}

    # -- runs -------------------------------------------------------------------------------------
    def ensure_runs(
        self, study: str, keys: Iterable[RunKey], budget: int | None, optimal: dict[str, float | None]
    ) -> None:
        """Insert the runs that are not there yet (existing ones keep their status and results)."""
        rows = [(study, k.problem, k.method, k.seed, budget, optimal.get(k.problem)) for k in keys]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (study, problem, method, seed, budget, optimal_value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def runs(self, study: str | None = None, status: str | None = None) -> list[Run]:
        """The runs (of ``study``, with ``status``, when given), in run-id order."""
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if study is not None:
            sql, args = sql + " AND study = ?", [*args, study]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        rows = self._db.execute(sql + " ORDER BY run_id", args).fetchall()
        return [
            Run(
                r["run_id"],
                r["study"],
                r["problem"],
                r["method"],
                r["seed"],
                r["status"],
                r["budget"],
                r["optimal_value"],
                r["error"],
            )
            for r in rows
        ]

    def mark(self, run_id: int, status: str, error: str | None = None) -> None:
        """Set a run's status ('running' stamps the start time, 'done'/'failed' the end time)."""
        now = time.time()
        with self.transaction() as db:
            if status == "running":
                db.execute(
                    "UPDATE runs SET status = ?, error = NULL, started = COALESCE(started, ?) WHERE run_id = ?",
                    (status, now, run_id),
                )
            else:
                db.execute(
                    "UPDATE runs SET status = ?, error = ?, finished = ? WHERE run_id = ?", (status, error, now, run_id)
                )

    # -- evaluations ------------------------------------------------------------------------------
    def add_evaluations(self, run_id: int, rows: list[dict], state: bytes | None = None) -> None:
        """Commit one iteration's evaluations and the run's warm-start state atomically.

        Rows already stored (same run and idx) are an error: nothing is ever evaluated twice.
        """
        if not rows:
            return
        values = [
            tuple(json.dumps([float(v) for v in r["x"]]) if f == "x" else _num(r.get(f)) for f in EVALUATION_FIELDS)
            for r in rows
        ]
        with self.transaction() as db:
            db.executemany(
                f"INSERT INTO evaluations (run_id, {', '.join(EVALUATION_FIELDS)}) "
                f"VALUES (?, {', '.join('?' * len(EVALUATION_FIELDS))})",
                [(run_id, *v) for v in values],
            )
            if state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO run_state VALUES (?, ?, ?)", (run_id, int(rows[-1]["iteration"]), state)
                )

    def evaluations(self, run_id: int) -> list[dict]:
        """The stored evaluations of run ``run_id`` in order, one dict per row (``x`` decoded from JSON)."""
        rows = self._db.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["x"] = json.loads(d["x"])
            out.append(d)
        return out

    def state(self, run_id: int) -> tuple[int, bytes] | None:
        """(iteration, checkpoint bytes) last stored for run ``run_id``, or None."""
        row = self._db.execute("SELECT iteration, state FROM run_state WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else (row["iteration"], row["state"])

    # -- metrics ----------------------------------------------------------------------------------
    def add_metrics(self, run_id: int, values: dict[str, float]) -> None:
        """Store named metric values of run ``run_id`` (replacing values of the same names)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)", [(run_id, k, _num(v)) for k, v in values.items()]
            )

    def metrics(self, run_id: int) -> dict[str, float]:
        """The metrics stored for run ``run_id``, by name."""
        rows = self._db.execute("SELECT name, value FROM metrics WHERE run_id = ?", (run_id,))
        return {r["name"]: r["value"] for r in rows}

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Read-only SQL for reports."""
        return self._db.execute(sql, args).fetchall()


def _num(v: object) -> object:
    if v is None:
        return None
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return v
    f = float(v)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


__all__ = ["Run", "RunKey", "Store"]
