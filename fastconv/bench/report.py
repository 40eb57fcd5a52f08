"""Turn a benchmark result document into a summary, a text table, JSON, a markdown table and a PNG plot."""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional

PASS_ORDER = ["forward", "backward-data", "backward-weight", "backward", "step"]


def _base_pass(name: str) -> str:
    return "backward-weight" if name.startswith("backward-weight") else name


def _geomean(xs: List[float]) -> Optional[float]:
    xs = [x for x in xs if x and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def _timed(rows):
    return [r for r in rows if r.get("ratio")]


def summarize(doc: dict) -> dict:
    """Geometric-mean ratios per (kind, pass, class) and where each issue-3 target stands."""
    rows = doc.get("results", [])
    groups: Dict[str, List[dict]] = {}
    for r in _timed(rows):
        if r["kind"] == "conv":
            key = f"conv {_base_pass(r['pass'])} [{r['cls']}]"
        elif r["kind"] == "pool":
            key = f"{r['params']['op']}_pool2d {r['pass']}"
        elif r["kind"] == "act":
            key = f"{r['params']['op']} {r['pass']}"
        else:
            key = f"train {r['layer']}"
        groups.setdefault(key, []).append(r)
    summary_groups = []
    for key, rs in groups.items():
        pk = [r["pct_peak"] for r in rs if r.get("pct_peak") is not None]
        summary_groups.append(dict(group=key, n=len(rs), geomean_ratio=_geomean([r["ratio"] for r in rs]),
                                   min_ratio=min(r["ratio"] for r in rs), max_ratio=max(r["ratio"] for r in rs),
                                   median_pct_peak=sorted(pk)[len(pk) // 2] if pk else None,
                                   min_pct_peak=min(pk) if pk else None, metric=rs[0]["metric"]))
    summary_groups.sort(key=lambda g: g["group"])

    checks = [r.get("check", {}) for r in rows]
    failed = [f"{r['id']} {r['pass']}" for r in rows if not r.get("check", {}).get("passed", False)]
    errors = [f"{r['id']} {r['pass']}: {r['error']}" for r in rows if r.get("error")]

    def sel(kind, pss=None, cls=None, op=None):
        out = []
        for r in _timed(rows):
            if r["kind"] != kind:
                continue
            if pss is not None and _base_pass(r["pass"]) not in pss:
                continue
            if cls is not None and r["cls"] != cls:
                continue
            if op is not None and r["params"].get("op") not in op:
                continue
            out.append(r)
        return out

    def target(name, rs, value_fn, goal, how, n=None, per_row=False):
        if not rs:
            return dict(target=name, goal=goal, value=None, met=None, n=0, how=how)
        v = value_fn(rs)
        t = dict(target=name, goal=goal, value=v, met=(v is not None and v >= goal), n=len(rs) if n is None else n,
                 how=how)
        if per_row:
            # rows under the goal, and those of them whose paired ratios lie under it in three repeats of four
            # (q3 < goal): the misses that the noise of a shared machine does not explain
            t["below"] = sorted(f"{r['id']} {r['pass']}" for r in rs if r["ratio"] < goal)
            paired = [r for r in rs if (r.get("ratio_pairs") or {}).get("q3") is not None]
            beyond = [f"{r['id']} {r['pass']}" for r in paired if r["ratio_pairs"]["q3"] < goal]
            t["below_beyond_noise"] = sorted(beyond) if paired else None  # None: a file from before the pairs
        return t

    def worst_class(rs):
        by_cls: Dict[str, List[dict]] = {}
        for r in rs:
            by_cls.setdefault(r["cls"], []).append(r)
        return min(gm(v) for v in by_cls.values())

    gm = lambda rs: _geomean([r["ratio"] for r in rs])  # noqa: E731
    mn = lambda rs: min(r["ratio"] for r in rs)  # noqa: E731
    mpk = lambda rs: min(r["pct_peak"] for r in rs if r.get("pct_peak") is not None)  # noqa: E731
    medpk = lambda rs: sorted(r["pct_peak"] for r in rs)[len(rs) // 2]  # noqa: E731
    bwd_data, bwd_weight = sel("conv", {"backward-data"}), sel("conv", {"backward-weight"})
    targets = [
        target("conv forward, large layers: geomean ratio", sel("conv", {"forward"}, "large"), gm, 0.9, "geomean"),
        target("conv forward, small/few-channel/1x1: geomean ratio", sel("conv", {"forward"}, "small"), gm, 1.2,
               "geomean"),
        target("conv backward-data: every layer ratio", bwd_data, mn, 1.0, "min", per_row=True),
        target("conv backward-data: geomean ratio of every layer class", bwd_data, worst_class, 1.0, "worst class",
               n=len({r["cls"] for r in bwd_data})),
        target("conv backward-weight(+bias): every layer ratio", bwd_weight, mn, 1.0, "min", per_row=True),
        target("conv backward-weight(+bias): geomean ratio of every layer class", bwd_weight, worst_class, 1.0,
               "worst class", n=len({r["cls"] for r in bwd_weight})),
        target("training steps: ratio", sel("train"), mn, 1.0, "min", per_row=True),
        target("pooling fwd+bwd: ratio", sel("pool"), mn, 5.0, "min", per_row=True),
        target("pooling fwd+bwd: % copy bandwidth", sel("pool"), mpk, 50.0, "min"),
        target("relu/guided backward: % copy bandwidth", sel("act", {"backward"}), mpk, 80.0, "min"),
        target("large conv forward: % FMA peak", sel("conv", {"forward"}, "large"), medpk, 80.0, "median"),
    ]
    return dict(groups=summary_groups, targets=targets, n_results=len(rows), n_checked=len(checks),
                n_failed=len(failed), failed=failed, errors=errors,
                all_passed=(len(failed) == 0 and len(rows) > 0))


# ----------------------------------------------------------------------------------------------------------------------
# text and markdown tables
# ----------------------------------------------------------------------------------------------------------------------

COLUMNS = ["layer", "pass", "shape", "fastconv ms", "torch ms", "ratio", "paired q1-q3", "fastconv rate",
           "torch rate", "unit", "% peak", "IQR %", "check"]
ALIGN = "lllrrrrrrlrrl"


def _pair_band(r: dict) -> str:
    p = r.get("ratio_pairs") or {}
    if p.get("q1") is None:
        return "-"
    return f"{_fmt(p['q1'])}-{_fmt(p['q3'])}"


def _iqr_pct(*stats) -> Optional[float]:
    """Spread of the samples: the larger (q3 - q1) / median of the two sides, in %."""
    vals = [100.0 * (st["q3_ms"] - st["q1_ms"]) / st["median_ms"] for st in stats
            if st and st.get("median_ms")]
    return max(vals) if vals else None


def _fmt(v, nd=2, sci=True):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if not sci and abs(v) < 0.01:
            return "<0.01"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.01:
            return f"{v:.{nd}f}"
        return f"{v:.2e}"
    return str(v)


def _check_str(c: dict) -> str:
    if not c:
        return "-"
    if c.get("passed"):
        return "ok"
    msg = c.get("msg") or f"err {c.get('err', 0):.1e} > {c.get('tol', 0):.1e}"
    return f"FAIL ({msg})"


def table_rows(doc: dict) -> List[List[str]]:
    out = []
    for r in doc.get("results", []):
        fa, fb = r.get("fastconv") or {}, r.get("torch") or {}
        out.append([
            r["id"], r["pass"], r["shape"],
            _fmt(fa.get("median_ms"), 3), _fmt(fb.get("median_ms"), 3), _fmt(r.get("ratio")), _pair_band(r),
            _fmt(fa.get("rate"), 2, False), _fmt(fb.get("rate"), 2, False), r.get("metric", "-"),
            _fmt(r.get("pct_peak"), 2, False), _fmt(_iqr_pct(fa, fb), 0), _check_str(r.get("check", {})) if not r.get("error") else
            "ERROR " + r["error"][:60],
        ])
    return out


def _peak_lines(doc: dict) -> List[str]:
    p = doc.get("peak", {})
    m = doc.get("meta", {})
    lines = [
        f"machine: {m.get('cpu_model')}" + (f" [{m['cpu_id']}]" if m.get("cpu_id") else "")
        + f" ({m.get('cpus')} cpus), device {m.get('device')}"
        + (f" [{m.get('gpu')}]" if m.get("gpu") else "") + f", threads {m.get('threads')}, "
        f"torch {m.get('torch')}, fastconv {m.get('fastconv')}, fp32" + (" (TF32 allowed)" if m.get("tf32") else ""),
        f"measured peak: FMA {p.get('fma_gflops', 0):.1f} GFLOP/s ({p.get('fma_source')}); "
        f"copy {p.get('copy_gbs', 0):.1f} GB/s ({p.get('copy_source')})",
    ]
    if m.get("malloc"):
        lines.append(f"allocator: {m['malloc']}")
    for n in p.get("notes", []):
        lines.append(f"NOTE: {n}")
    la, lb = m.get("loadavg_start"), m.get("loadavg_end")
    if la:
        lines.append(f"load average at start {la[0]:.2f}" + (f", at end {lb[0]:.2f}" if lb else "")
                     + (f"; elapsed {m['elapsed_s']:.0f} s" if m.get("elapsed_s") else ""))
        cpus = m.get("cpus") or 1
        busy_end = lb is not None and lb[0] > (m.get("threads") or 1) + 0.5 * cpus  # our own threads count too
        if (la[0] > 0.5 * cpus or busy_end) and m.get("device") == "cpu":
            lines.append(f"WARNING: the machine was busy (load average beyond this run's own threads): other "
                         "processes steal cores from the OpenMP teams, timings are noisy and can be far too slow")
    return lines


def _reads_at_least(shown: str, goal: float) -> bool:
    try:
        return float(shown) >= goal
    except ValueError:  # "<0.01"
        return False


def _summary_rows(doc: dict):
    s = doc.get("summary") or summarize(doc)
    g_rows = [[g["group"], str(g["n"]), _fmt(g["geomean_ratio"]), _fmt(g["min_ratio"]), _fmt(g["max_ratio"]),
               _fmt(g["median_pct_peak"], 2, False)] for g in s["groups"]]
    t_rows = []
    for t in s["targets"]:
        met = "-" if t["met"] is None else ("met" if t["met"] else "missed")
        v = t["value"]
        shown = _fmt(v, 2, False)
        if t["met"] is False and _reads_at_least(shown, t["goal"]):
            shown = f"{v:.3f}"  # a miss must not print as the goal (0.997 as 1.00)
        below = "-"
        if "below" in t:
            beyond = t["below_beyond_noise"]
            below = f"{len(t['below'])} ({'-' if beyond is None else len(beyond)})"
        t_rows.append([t["target"], shown + ("%" if v is not None and "%" in t["target"] else "x"),
                       f">= {t['goal']:g}", met, f"{t['how']} of {t['n']}", below])
    return s, g_rows, t_rows


def _targets_note(doc: dict) -> str:
    m = doc.get("meta", {})
    if m.get("suite") in ("full", "all") and not m.get("quick"):
        return ""
    return (f"(the targets are stated for the full suite; this run of '{m.get('suite')}' covers part of it, "
            "so the values below are indicative only)")


def format_table(doc: dict) -> str:
    def render(headers, rows, align):
        widths = [len(h) for h in headers]
        for row in rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
        line = "  ".join(h.ljust(w) if a == "l" else h.rjust(w) for h, w, a in zip(headers, widths, align))
        out = [line, "-" * len(line)]
        for row in rows:
            out.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(row, widths, align)).rstrip())
        return out

    lines = _peak_lines(doc) + [""]
    lines += render(COLUMNS, table_rows(doc), ALIGN)
    s, g_rows, t_rows = _summary_rows(doc)
    lines += ["", "ratio = torch time / fastconv time (> 1: fastconv faster); % peak = fastconv rate / measured "
                  "FMA peak (GFLOP/s) or copy bandwidth (GB/s); paired q1-q3 = quartiles of the per-repeat "
                  "ratios (each repeat times both back to back: the noise on the ratio); IQR % = sample spread "
                  "(q3 - q1) / median, the larger of the two sides; below goal (beyond noise) = layers whose ratio "
                  "is under the goal (and those whose paired q3 is)", ""]
    lines += render(["group", "n", "geomean ratio", "min", "max", "median % peak"], g_rows, "lrrrrr")
    lines += ["", _targets_note(doc)] if _targets_note(doc) else [""]
    lines += render(["issue-3 target", "value", "goal", "status", "over", "below goal (beyond noise)"], t_rows,
                    "lrrllr")
    lines += ["", f"correctness: {s['n_results'] - s['n_failed']}/{s['n_results']} passed"
              + ("" if not s["failed"] else "; FAILED: " + ", ".join(s["failed"]))]
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    def md(headers, rows, align):
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if a == "r" else "---"
                                                              for a in align) + "|"]
        for row in rows:
            out.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
        return out

    m = doc.get("meta", {})
    q = ", quick" if m.get("quick") and m.get("suite") != "quick" else ""
    lines = [f"# fastconv benchmark: {m.get('slug')} (suite {m.get('suite')}{q})", ""]
    lines += [f"- {ln}" for ln in _peak_lines(doc)]
    lines += [f"- date {m.get('date')}; ratio = torch time / fastconv time (> 1: fastconv faster); times are "
              f"medians of interleaved repeats; % peak = fastconv rate / measured peak", ""]
    s, g_rows, t_rows = _summary_rows(doc)
    lines += ["## Targets (issue 3)", ""] + ([_targets_note(doc), ""] if _targets_note(doc) else [])
    lines += md(["target", "value", "goal", "status", "over", "below goal (beyond noise)"], t_rows, "lrrllr")
    lines += ["", "## Summary by layer class", ""]
    lines += md(["group", "n", "geomean ratio", "min", "max", "median % peak"], g_rows, "lrrrrr")
    lines += ["", "## All cases", ""] + md(COLUMNS, table_rows(doc), ALIGN)
    lines += ["", f"Correctness: {s['n_results'] - s['n_failed']}/{s['n_results']} passed"
              + ("" if not s["failed"] else "; failed: " + ", ".join(s["failed"])), ""]
    return "\n".join(lines)


def _jsonable(o):
    if isinstance(o, float) and (math.isinf(o) or math.isnan(o)):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def write_json(doc: dict, path: str) -> None:
    _mkdir(path)
    with open(path, "w") as f:
        json.dump(_jsonable(doc), f, indent=1)
        f.write("\n")


def write_markdown(doc: dict, path: str) -> None:
    _mkdir(path)
    with open(path, "w") as f:
        f.write(markdown(doc))


def _mkdir(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)


def plot(doc: dict, path: str) -> None:
    """Horizontal bar per (layer, pass): fastconv/torch speed ratio on a log axis, with the 1.0 line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc.get("results", []) if r.get("ratio")]
    if not rows:
        raise ValueError("nothing to plot: no timed results")
    labels = [f"{r['id']} · {r['pass']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    palette = {"forward": "#1f77b4", "backward-data": "#ff7f0e", "backward-weight": "#2ca02c",
               "backward": "#9467bd", "step": "#d62728"}
    colors = [palette.get(_base_pass(r["pass"]), "#7f7f7f") for r in rows]
    h = max(3.0, 0.19 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(10, h))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, ratios, color=colors, height=0.75)
    ax.axvline(1.0, color="black", linewidth=1.2, linestyle="--")
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.set_xlabel("speed ratio fastconv / torch (torch time / fastconv time; > 1 = fastconv faster)")
    m = doc.get("meta", {})
    ax.set_title(f"fastconv vs torch: {m.get('slug')}, {m.get('threads')} threads, suite {m.get('suite')}",
                 fontsize=10)
    from matplotlib.patches import Patch
    seen = []
    for r, c in zip(rows, colors):
        k = _base_pass(r["pass"])
        if k not in [s[0] for s in seen]:
            seen.append((k, c))
    ax.legend(handles=[Patch(color=c, label=k) for k, c in seen], fontsize=8, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.tick_params(axis="x", which="both", top=True, labeltop=True)  # tall figures: the scale at both ends
    fig.tight_layout()
    _mkdir(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
