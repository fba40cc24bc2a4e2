"""Tables of a GradBench run: per workload, and per eval.

A time is the median of the ``"evaluate"`` timings of one message (GradBench's own scorer
averages them; the median keeps a compilation in the first run, JAX's, and the noise of a
shared machine out). A ratio is ours over the peer's, so below 1 means nbautodiff was faster.
The per-eval line sums each tool's times over the workloads every compared tool finished
(GradBench's score is the inverse of such a sum), and gives the geometric mean of the ratios
per workload of the derivative function ("derivative: r").
"""
from __future__ import annotations

import math

from intermediary import Session

TOOLS = ("nbautodiff", "manual", "jax", "pytorch")
DERIVATIVE = {"lse": "gradient", "llsq": "gradient", "det": "gradient", "ode": "gradient",
              "kmeans": "dir", "gmm": "jacobian", "lstm": "jacobian", "ba": "jacobian",
              "ht": "jacobian", "hello": "double"}


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def _mark(evaluation) -> str:
    if evaluation is None:
        return "—"
    if not evaluation.success:
        return "failed"
    return {True: "✓", False: "✗", None: "?"}[evaluation.valid]


def by_workload(sessions: dict[str, Session]) -> dict:
    """``{(function, description): {tool: Evaluation}}`` in the eval's order."""
    table: dict = {}
    for tool, session in sessions.items():
        for evaluation in session.evaluations:
            table.setdefault((evaluation.function, evaluation.description), {})[tool] = evaluation
    return table


def workload_rows(eval_name: str, sessions: dict[str, Session]) -> list[str]:
    peers = [t for t in TOOLS if t in sessions]
    rows = []
    for (function, description), results in by_workload(sessions).items():
        ours = results.get("nbautodiff")
        ours_s = ours.median_s if ours and ours.success else None
        cells = [eval_name, function, description or "—", _mark(ours), seconds(ours_s)]
        for tool in peers:
            if tool == "nbautodiff":
                continue
            peer = results.get(tool)
            peer_s = peer.median_s if peer and peer.success else None
            cells += [f"{seconds(peer_s)} {_mark(peer) if peer else ''}".strip(),
                      ratio(ours_s, peer_s)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def workload_header(sessions: dict[str, Session]) -> list[str]:
    peers = [t for t in TOOLS if t in sessions and t != "nbautodiff"]
    head = ["eval", "function", "workload", "valid", "nbautodiff"]
    for tool in peers:
        head += [tool, f"ours/{tool}"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def summary_row(eval_name: str, sessions: dict[str, Session]) -> dict:
    """One eval: validity of ours, summed times and ratios against each peer."""
    ours = sessions.get("nbautodiff")
    row: dict = {"eval": eval_name}
    if ours is None:
        return row
    evaluations = ours.evaluations
    valid = sum(1 for e in evaluations if e.success and e.valid)
    row["valid"] = (f"{valid}/{len(evaluations)}" if ours.defined
                    else f"unsupported ({ours.outcome})")
    if ours.outcome not in ("success", "undefined"):
        row["valid"] += f" ({ours.outcome})"
    derivative = DERIVATIVE.get(eval_name.split("-")[0])
    table = by_workload(sessions)
    for tool in TOOLS:
        if tool == "nbautodiff" or tool not in sessions:
            continue
        common = [(key, res) for key, res in table.items()
                  if all(t in res and res[t].success and res[t].median_s for t in
                         ("nbautodiff", tool))]
        if not common:
            row[tool] = None
            continue
        ours_sum = sum(res["nbautodiff"].median_s for _, res in common)
        peer_sum = sum(res[tool].median_s for _, res in common)
        ratios = [res["nbautodiff"].median_s / res[tool].median_s for (function, _), res in common
                  if function == derivative]
        row[tool] = {"ours": ours_sum, "peer": peer_sum, "workloads": len(common),
                     "derivative_geomean": (math.exp(sum(map(math.log, ratios)) / len(ratios))
                                            if ratios else None)}
    row["ours_total"] = sum(e.median_s for e in evaluations if e.success and e.median_s)
    return row


def sessions_from_json(data: dict) -> dict[str, dict[str, Session]]:
    """``results.json`` (``bench.py``'s) back into sessions."""
    from intermediary import Evaluation
    out = {}
    for spec, tools in data.items():
        out[spec] = {}
        for tool, fields in tools.items():
            fields = dict(fields)
            fields["evaluations"] = [Evaluation(**e) for e in fields["evaluations"]]
            out[spec][tool] = Session(**fields)
    return out


def summary_table(rows: list[dict]) -> list[str]:
    head = ["eval", "nbautodiff valid", "ours (all workloads)", "manual", "ours/manual",
            "JAX", "ours/JAX", "PyTorch", "ours/PyTorch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["eval"], row.get("valid", "not run"), seconds(row.get("ours_total") or None)]
        for tool in ("manual", "jax", "pytorch"):
            info = row.get(tool)
            if not info:
                cells += ["—", "—"]
                continue
            geo = info["derivative_geomean"]
            cells += [f"{seconds(info['peer'])} (ours {seconds(info['ours'])}, "
                      f"{info['workloads']} msgs)",
                      ratio(info["ours"], info["peer"])
                      + (f" (derivative: {ratio(geo, 1.0)})" if geo else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
