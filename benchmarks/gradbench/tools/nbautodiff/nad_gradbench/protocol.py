"""nbautodiff as a GradBench tool: the protocol loop.

How GradBench's protocol works (gradbench/gradbench, CONTRIBUTING.md "Protocol"; the eval side
is ``python/gradbench/gradbench/eval.py``, the intermediary ``crates/gradbench/src/intermediary.rs``):

* Three processes: an *eval* (it generates inputs and checks outputs), a *tool* (this program)
  and an *intermediary* that forwards each line of the eval's stdout to the tool's stdin and
  each line of the tool's stdout back, logging both with timestamps. Every message and every
  response is one JSON object on one line, with the message's ``"id"``; the eval waits for the
  response to each message before it sends the next.
* ``{"kind": "start", "eval": name}`` comes first; the response may name the ``"tool"``.
* ``{"kind": "define", "module": name}``: does the tool implement this eval? The response is
  ``{"success": true}`` or ``{"success": false, "error": ...}`` (then the eval stops), with
  optional ``"timings"`` for preparing the module (here: compiling every derivative).
* ``{"kind": "evaluate", "module", "function", "input", "description"}``: run ``function`` of
  the module on ``input``. Most inputs carry ``min_runs`` and ``min_seconds``: the tool runs
  the function at least ``min_runs`` times and until the runs took ``min_seconds`` in all,
  and returns one ``{"name": "evaluate", "nanoseconds": ...}`` timing per run, with the
  ``"output"`` (``{"success": false, "error": ...}`` if it failed). GradBench's scorer averages
  the ``"evaluate"`` timings of a message and sums those averages over the workloads.
* ``{"kind": "analysis", "of": id, "valid": bool, "error"?}``: the eval's verdict on the output
  of an earlier evaluate message. Validation happens in the eval, not in the tool: most evals
  run the ``manual`` C++ tool (``tools/manual/bin/<eval>``) on the same input and compare
  outputs with ``gradbench.comparison.compare_json_objects`` (each number within a relative
  difference of 1e-4, ``|x - y| / max(1, |x| + |y|)``); ``particle`` and ``saddle`` compare with
  a fixed expected answer. Any message of another kind (``analysis``, or one added later) is
  answered with its ``"id"`` alone. The eval may send ``{"kind": "end"}`` and not read a reply;
  the loop stops there.

This module answers those messages for the eval modules of :data:`EVALS` (one module of this
package per eval, each exporting ``FUNCTIONS`` and ``EXAMPLES``: see ``function.py``).
:func:`respond` answers one message and :func:`serve` runs the loop over any pair of text
streams, so the tests run it in-process; ``run.py`` next to this package runs it on
stdin/stdout.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import IO, Any

from .function import evaluate

TOOL = "nbautodiff"
EVALS = ("hello", "lse", "llsq", "det", "kmeans", "ode", "gmm", "lstm", "ba", "ht",
         "particle", "saddle")


class Tool:
    """The state of one session: the eval modules defined so far."""

    def __init__(self):
        self.modules: dict[str, Any] = {}

    def respond(self, message: dict) -> dict | None:
        """The response to ``message`` (None for ``end``, which takes no reply)."""
        kind = message.get("kind")
        response: dict = {"id": message["id"]}
        if kind == "start":
            response["tool"] = TOOL
        elif kind == "define":
            response.update(self.define(message["module"]))
        elif kind == "evaluate":
            response.update(self.evaluate(message["module"], message["function"],
                                          message["input"]))
        elif kind == "end":
            return None
        return response

    def define(self, name: str) -> dict:
        if name not in EVALS:
            return {"success": False, "error": f"{TOOL} has no implementation of eval {name!r}"}
        start = time.perf_counter_ns()
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except Exception as error:
            return {"success": False, "error": describe(error)}
        failures = {}                                   # compile every derivative now
        for example in module.EXAMPLES:
            for function, fn in module.FUNCTIONS.items():
                if function in failures:
                    continue
                try:
                    fn.compute(*fn.prepare(example))
                except Exception as error:              # an AutodiffError names the construct
                    failures[function] = error
        if failures:
            summary = "\n".join(f"{function}: {type(error).__name__}: {error}"
                                for function, error in failures.items())
            first = next(iter(failures.values()))
            return {"success": False, "error": f"{summary}\n\n" + describe(first)}
        self.modules[name] = module
        return {"success": True,
                "timings": [{"name": "compile", "nanoseconds": time.perf_counter_ns() - start}]}

    def evaluate(self, name: str, function: str, raw_input: Any) -> dict:
        module = self.modules.get(name)
        if module is None:
            return {"success": False, "error": f"module {name!r} was not defined"}
        fn = module.FUNCTIONS.get(function)
        if fn is None:
            return {"success": False, "error": f"eval {name!r} has no function {function!r}"}
        try:
            return evaluate(fn, raw_input)
        except Exception as error:
            return {"success": False, "error": describe(error)}


def describe(error: BaseException) -> str:
    """The exception's type and message first (an AutodiffError names the construct and the
    line of the eval's code), then the traceback."""
    return (f"{type(error).__name__}: {error}\n\n"
            + "".join(traceback.format_exception(error)))


def serve(lines: IO[str], out: IO[str]) -> None:
    """Answer every message read from ``lines`` on ``out``, one JSON line each, flushed."""
    tool = Tool()
    for line in lines:
        if not line.strip():
            continue
        response = tool.respond(json.loads(line))
        if response is None:
            break
        out.write(json.dumps(response) + "\n")
        out.flush()


def main() -> None:
    try:
        serve(sys.stdin, sys.stdout)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
