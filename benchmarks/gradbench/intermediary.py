"""A GradBench intermediary over pipes: one eval process, one tool process, no Docker.

It does what ``gradbench run`` does (``crates/gradbench/src/intermediary.rs``): each line the
eval writes goes to the tool, each line the tool answers goes back to the eval, and both are
logged as GradBench logs them (``{"elapsed": {"nanoseconds": ...}, "message": ...}`` then
``{"elapsed": ..., "response": ...}``, one JSON object per line). The eval's ``analysis``
messages carry its verdicts; :func:`run_session` gathers them with the evaluate responses into
:class:`Evaluation` records.

A tool that takes longer than ``timeout`` seconds to answer one message, or exits, ends the
session: the tool is killed and the outcome says so (``"timeout"``, ``"tool exited"``).
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Evaluation:
    """One evaluate message and what became of it."""
    id: int
    function: str
    description: str
    success: bool
    timings_ns: list[int] = field(default_factory=list)    # the "evaluate" timings
    valid: bool | None = None                              # None: the eval sent no analysis
    error: str | None = None                               # the tool's or the eval's

    @property
    def median_s(self) -> float | None:
        if not self.timings_ns:
            return None
        values = sorted(self.timings_ns)
        mid = len(values) // 2
        ns = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        return ns / 1e9

    @property
    def mean_s(self) -> float | None:
        return sum(self.timings_ns) / len(self.timings_ns) / 1e9 if self.timings_ns else None


@dataclass
class Session:
    """The outcome of one eval against one tool."""
    eval: str
    tool: str
    defined: bool | None = None
    define_error: str | None = None
    define_timings: list[dict] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    outcome: str = "success"           # success | undefined | failure | invalid | timeout | ...
    seconds: float = 0.0


def _lines(stream, sink: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)
    sink.put(None)


def run_session(*, eval_name: str, tool_name: str, eval_cmd: list[str], tool_cmd: list[str],
                cwd: Path, eval_env: dict, tool_env: dict, log_path: Path,
                timeout: float = 600.0, tool_preexec=None) -> Session:
    """Run ``eval_cmd`` against ``tool_cmd`` (both started in ``cwd``) and log to ``log_path``.

    The tools' and evals' stderr go to ``log_path`` with ``.tool.err`` / ``.eval.err``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    session = Session(eval=eval_name, tool=tool_name)
    started = time.perf_counter()
    with open(log_path, "w") as log, \
            open(log_path.with_suffix(".eval.err"), "w") as eval_err, \
            open(log_path.with_suffix(".tool.err"), "w") as tool_err:
        evaluator = subprocess.Popen(eval_cmd, cwd=cwd, env=eval_env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=eval_err)
        tool = subprocess.Popen(tool_cmd, cwd=cwd, env=tool_env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=tool_err,
                                preexec_fn=tool_preexec)
        from_eval: queue.Queue = queue.Queue()
        from_tool: queue.Queue = queue.Queue()
        for stream, sink in ((evaluator.stdout, from_eval), (tool.stdout, from_tool)):
            threading.Thread(target=_lines, args=(stream, sink), daemon=True).start()
        pending: dict[int, Evaluation] = {}
        try:
            _forward(session, evaluator, tool, from_eval, from_tool, log, pending, timeout,
                     started)
        finally:
            for proc in (tool, evaluator):
                for pipe in (proc.stdin,):
                    try:
                        pipe.close()
                    except OSError:
                        pass
            for proc in (evaluator, tool):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    session.seconds = time.perf_counter() - started
    if session.outcome == "success":
        if session.defined is False:
            session.outcome = "undefined"
        elif any(not e.success for e in session.evaluations):
            session.outcome = "failure"
        elif any(e.valid is False for e in session.evaluations):
            session.outcome = "invalid"
    return session


def _forward(session, evaluator, tool, from_eval, from_tool, log, pending, timeout, started):
    def stamp() -> int:
        return int((time.perf_counter() - started) * 1e9)

    while True:
        line = from_eval.get()
        if line is None:
            return
        message = json.loads(line)
        log.write(json.dumps({"elapsed": {"nanoseconds": stamp()}, "message": message}) + "\n")
        if message.get("kind") == "analysis":
            target = pending.get(message["of"])
            if target is not None:
                target.valid = bool(message["valid"])
                if not message["valid"]:
                    target.error = message.get("error")
        try:
            tool.stdin.write(line if line.endswith("\n") else line + "\n")
            tool.stdin.flush()
        except BrokenPipeError:
            session.outcome = "tool exited"
            return
        if message.get("kind") == "end":
            return
        try:
            answer = from_tool.get(timeout=timeout)
        except queue.Empty:
            session.outcome = "timeout"
            tool.kill()
            return
        if answer is None:
            session.outcome = "tool exited"
            return
        response = json.loads(answer)
        log.write(json.dumps({"elapsed": {"nanoseconds": stamp()}, "response": response}) + "\n")
        log.flush()
        _record(session, message, response, pending)
        try:
            evaluator.stdin.write(answer if answer.endswith("\n") else answer + "\n")
            evaluator.stdin.flush()
        except BrokenPipeError:
            return


def _record(session, message, response, pending) -> None:
    kind = message.get("kind")
    if kind == "define":
        session.defined = bool(response.get("success"))
        session.define_error = response.get("error")
        session.define_timings = response.get("timings") or []
    elif kind == "evaluate":
        timings = [t["nanoseconds"] for t in response.get("timings") or []
                   if t.get("name") == "evaluate"]
        evaluation = Evaluation(id=message["id"], function=message["function"],
                                description=message.get("description") or "",
                                success=bool(response.get("success")), timings_ns=timings,
                                error=response.get("error"))
        session.evaluations.append(evaluation)
        pending[message["id"]] = evaluation


def tool_environment(base: dict | None = None, *, pythonpath: list[str] = ()) -> dict:
    """``base`` (default ``os.environ``) with one thread for BLAS, OpenMP, MKL, XLA and numba,
    JAX on the CPU, and ``pythonpath`` prepended to ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[variable] = "1"
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["JAX_PLATFORMS"] = "cpu"
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    return env
