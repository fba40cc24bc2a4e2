"""nbautodiff in GradBench, beside the manual C++, JAX and PyTorch tools (``make bench-gradbench
GRADBENCH=<checkout>``).

For each eval it runs GradBench's own eval program (``python/gradbench/gradbench/evals/<eval>
/run.py`` of the checkout, with GradBench's validation: every output is compared with the
``manual`` tool's on the same input) against each tool through pipes (``intermediary.py``, no
Docker):

* ``nbautodiff``: ``tools/nbautodiff/run.py`` of this folder (the tool, in GradBench's layout);
* ``manual``: GradBench's hand-differentiated C++ (``peer_manual.py``), built with g++;
* ``jax``: GradBench's JAX tool, timed to completion (``peer_jax.py``), if JAX is importable;
* ``pytorch``: GradBench's PyTorch tool, if PyTorch is importable;

each only on the evals it implements (``tools/<tool>/evals.txt``; nbautodiff on all of them),
every tool on one thread (``OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS=1``, XLA's one-thread flags)
and pinned to one CPU (the one the JAX tool pins itself to). It prints a table per workload and
one per eval (``report.py``) and writes them, with the machine, to ``--out`` (``results.md``,
``results.json``, the session logs in GradBench's log format under ``logs/``).

Workloads: by default smaller than GradBench's (a 2-core machine: ``QUICK`` below); ``--full``
uses the evals' own defaults. ``--min-runs`` / ``--min-seconds`` are passed to every eval (each
evaluate message runs at least that often and that long). Evals: ``--evals lse,gmm,...``;
``ht-simple`` is the ``ht`` eval on its "simple" variant (``ht`` is GradBench's default, the
"complicated" one).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import checkout  # noqa: E402
import report  # noqa: E402
from intermediary import run_session, tool_environment  # noqa: E402

EVALS = ("hello", "lse", "llsq", "det", "kmeans", "ode", "gmm", "lstm", "ba", "ht", "ht-simple",
         "particle", "saddle")
QUICK = {
    "lse": ["-n", "10000", "100000", "1000000"],
    "llsq": ["-n", "256", "2048", "16392", "-m", "128"],
    "det": ["-l", "5", "7", "9"],
    "kmeans": ["-k", "10", "100", "-n", "1000", "10000", "-d", "8"],
    "ode": ["-n", "1000", "10000", "-s", "1", "10"],
    "gmm": ["-d", "2", "10", "20", "-k", "5", "10", "25", "-n", "1000"],
    "lstm": ["-l", "2", "4", "-c", "1024", "4096"],
    "ba": ["--min", "1", "--max", "3"],
    "ht": ["--min", "1", "--max", "5"],
    "ht-simple": ["--min", "1", "--max", "5"],
}


def eval_command(root: Path, spec: str, args, python: str) -> tuple[str, list[str]]:
    name = spec.split("-")[0]
    extra = list(QUICK.get(spec, [])) if not args.full else []
    if spec == "ht-simple":
        extra += ["--variant", "simple"]
    if name == "ht" and args.full and not any(
            (root / "evals/ht/data" / f"{v}_big").glob("hand12_*")
            for v in (["simple"] if spec == "ht-simple" else ["complicated"])):
        extra += ["--max", "11"]       # the largest input is one of the checkout's missing files
    if name != "hello":
        extra += ["--min-runs", str(args.min_runs), "--min-seconds", str(args.min_seconds)]
    script = root / "python/gradbench/gradbench/evals" / name / "run.py"
    return name, [python, str(script), *extra]


def tool_commands(root: Path, python: str, wanted: list[str], log) -> dict[str, list[str]]:
    commands = {"nbautodiff": [python, str(HERE / "tools/nbautodiff/run.py")],
                "manual": [python, str(HERE / "peer_manual.py"), str(root)],
                "jax": [python, str(HERE / "peer_jax.py"), str(root)],
                "pytorch": [python, str(root / "python/gradbench/gradbench/tools/pytorch/run.py")]}
    for tool, module in (("jax", "jax"), ("pytorch", "torch")):
        if tool in wanted and importlib.util.find_spec(module) is None:
            log(f"{tool}: not installed ({module} does not import), skipped")
            wanted = [t for t in wanted if t != tool]
    return {t: commands[t] for t in wanted}


def supports(root: Path, tool: str, eval_name: str) -> bool:
    return tool == "nbautodiff" or eval_name in checkout.supported(root, tool)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def render(header: str, notes: list[str], results: dict[str, dict]) -> list[str]:
    """The report: the run, the notes, the per-eval table, nbautodiff's refusals and failures,
    the per-workload tables."""
    lines = [header, ""] + [f"Note: {note}" for note in notes]
    lines += ["", "Per eval:", ""]
    summary = [report.summary_row(spec, sessions) for spec, sessions in results.items()]
    lines += report.summary_table(summary)
    unsupported = [(spec, s["nbautodiff"]) for spec, s in results.items()
                   if "nbautodiff" in s and s["nbautodiff"].defined is False]
    if unsupported:
        lines += ["", "nbautodiff refused:"]
        for spec, session in unsupported:
            first = (session.define_error or "").split("\n\n")[0]
            lines += [f"- {spec}:"] + [f"  - {line}" for line in first.splitlines()]
    failures = [(spec, e) for spec, s in results.items() if "nbautodiff" in s
                for e in s["nbautodiff"].evaluations if not e.success or e.valid is False]
    if failures:
        lines += ["", "nbautodiff failures and invalid outputs:"]
        for spec, e in failures:
            lines.append(f"- {spec} {e.function} {e.description}: "
                         f"{(e.error or '').strip().splitlines()[:3]}")
    incomplete = [f"{spec} x {tool}: {s.outcome}" for spec, sessions in results.items()
                  for tool, s in sessions.items() if s.outcome in ("timeout", "tool exited")]
    if incomplete:
        lines += ["", "Sessions cut short (the later workloads of these tools are missing): "
                  + "; ".join(incomplete)]
    lines += ["", "Per workload:", ""]
    for spec, sessions in results.items():
        if any(s.evaluations for s in sessions.values()):
            lines += report.workload_header(sessions) + report.workload_rows(spec, sessions) + [""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gradbench", help="the checkout (default: $GRADBENCH)")
    parser.add_argument("--evals", default=",".join(EVALS))
    parser.add_argument("--tools", default="nbautodiff,manual,jax,pytorch")
    parser.add_argument("--full", action="store_true", help="GradBench's own workloads")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds a tool may take to answer one message")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU every tool is pinned to")
    parser.add_argument("--out", default=str(HERE.parents[1] / "build/gradbench"))
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables of the run saved in --out/results.json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((Path(args.out) / "results.json").read_text())
        print("\n".join(render(saved["header"], saved["notes"],
                               report.sessions_from_json(saved["sessions"]))))
        return 0

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    root = checkout.find_checkout(args.gradbench)
    specs = [e for e in args.evals.split(",") if e]
    unknown = [e for e in specs if e not in EVALS]
    if unknown:
        parser.error(f"unknown evals {unknown}; known: {', '.join(EVALS)}")
    out = Path(args.out).resolve()
    python = sys.executable
    checkout.build_manual(root, sorted({s.split("-")[0] for s in specs}), log)
    notes = checkout.make_run_dir(root, out / "run")
    tools = tool_commands(root, python, args.tools.split(","), log)
    env = tool_environment(pythonpath=[str(root / "python/gradbench")])
    env["CXXFLAGS"] = checkout.manual_environment(root)["CXXFLAGS"]
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpu = args.cpu if args.cpu in allowed else (min(allowed) if allowed else None)

    def pin():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    results: dict[str, dict] = {}
    for spec in specs:
        name, command = eval_command(root, spec, args, python)
        results[spec] = {}
        for tool, tool_cmd in tools.items():
            if not supports(root, tool, name):
                continue
            log(f"{spec} x {tool} ...")
            session = run_session(eval_name=spec, tool_name=tool, eval_cmd=command,
                                  tool_cmd=tool_cmd, cwd=out / "run", eval_env=env,
                                  tool_env=env, log_path=out / "logs" / spec / f"{tool}.jsonl",
                                  timeout=args.timeout, tool_preexec=pin)
            results[spec][tool] = session
            valid = sum(1 for e in session.evaluations if e.valid)
            log(f"  {session.outcome}: {valid}/{len(session.evaluations)} valid, "
                f"{session.seconds:.1f} s")

    header = (f"GradBench run of {datetime.date.today().isoformat()} on {machine()}; checkout "
              f"{root}; {'GradBench workloads' if args.full else 'quick workloads'}, "
              f"min_runs={args.min_runs}, min_seconds={args.min_seconds}; every tool on one "
              f"thread, pinned to CPU {cpu}. Times: medians of each message's runs.")
    lines = render(header, notes, results)
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(
        {"header": header, "notes": notes,
         "sessions": {spec: {tool: asdict(s) for tool, s in sessions.items()}
                      for spec, sessions in results.items()}}, indent=1))
    log(f"written: {out / 'results.md'}, {out / 'results.json'}, logs in {out / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
