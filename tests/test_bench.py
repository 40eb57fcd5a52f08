"""`fastconv bench --quick` end to end: it runs, writes a well-formed JSON document and every correctness check
passes. Nothing here looks at speed (timings belong to the benchmark, never to the tests)."""
from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("tqdm")

CONV_PASSES = {"forward", "backward-data", "backward-weight", "backward-weight+bias"}


def _run(args, tmp_path, timeout=600):
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.run([sys.executable, "-m", "fastconv", "bench", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "quick.json"
    md = tmp / "quick.md"
    args = ["--quick", "--json", str(out), "--markdown", str(md), "--no-progress"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp / "quick.png")]
    except ImportError:
        pass
    proc = _run(args, tmp)
    return proc, out, md


def test_quick_exits_cleanly(quick_run):
    proc, out, md = quick_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert out.is_file() and md.is_file()
    assert "ratio" in proc.stdout and "measured peak" in proc.stdout
    if "--plot" in proc.args:
        png = proc.args[proc.args.index("--plot") + 1]
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_quick_json_structure(quick_run):
    proc, out, _ = quick_run
    doc = json.loads(out.read_text())
    assert set(doc) >= {"meta", "peak", "results", "summary"}
    meta, peak = doc["meta"], doc["peak"]
    assert meta["quick"] is True and meta["suite"] == "quick" and meta["device"] == "cpu"
    assert meta["threads"] >= 1 and meta["cpu_model"] and meta["slug"].startswith("cpu-")
    if os.path.exists("/proc/cpuinfo") and "cpu family" in pathlib.Path("/proc/cpuinfo").read_text():  # x86 Linux
        assert meta["cpu_id"].startswith("family ") and " model " in meta["cpu_id"]
    assert peak["fma_gflops"] > 0 and peak["copy_gbs"] > 0 and peak["fma_source"] and peak["copy_source"]
    assert meta["malloc"].startswith("steady" if sys.platform.startswith("linux") else "default")

    rows = doc["results"]
    assert rows
    kinds = {r["kind"] for r in rows}
    assert kinds == {"conv", "pool", "act", "train"}
    conv_passes = {r["pass"] for r in rows if r["kind"] == "conv"}
    assert {"forward", "backward-data"} <= conv_passes and conv_passes <= CONV_PASSES
    assert any(p.startswith("backward-weight") for p in conv_passes)
    assert {r["pass"] for r in rows if r["kind"] in ("pool", "act")} == {"forward", "backward"}
    assert {r["params"]["model"] for r in rows if r["kind"] == "train"} == {"lenet5", "resnet_small"}

    for r in rows:
        name = f"{r['id']} {r['pass']}"
        assert "error" not in r, f"{name}: {r.get('error')}\n{r.get('traceback', '')}"
        for side in ("fastconv", "torch"):
            st = r[side]
            assert st["reps"] >= 1 and st["inner"] >= 1, name
            assert 0 < st["min_ms"] <= st["median_ms"], name
        assert r["metric"] in ("GFLOP/s", "GB/s"), name
        assert r["work"] > 0 and r["fastconv"]["rate"] > 0 and r["torch"]["rate"] > 0, name
        assert r["ratio"] > 0 and r["pct_peak"] > 0, name
        pr = r["ratio_pairs"]
        assert pr["n"] == min(r["fastconv"]["reps"], r["torch"]["reps"]), name
        assert 0 < pr["q1"] <= pr["median"] <= pr["q3"], name
        if r["kind"] == "conv":
            p = r["params"]
            flops = 2 * p["N"] * p["K"] * p["P"] * p["Q"] * (p["C"] // p["groups"]) * p["R"] * p["S"]
            assert r["work"] == flops, name

    s = doc["summary"]
    assert s["n_results"] == len(rows)
    assert {t["target"] for t in s["targets"]}
    assert s["groups"] and all(g["n"] >= 1 for g in s["groups"])


def test_quick_correctness_all_passed(quick_run):
    proc, out, _ = quick_run
    doc = json.loads(out.read_text())
    failed = [(f"{r['id']} {r['pass']}", r["check"]) for r in doc["results"] if not r["check"]["passed"]]
    assert not failed, failed
    for r in doc["results"]:
        c = r["check"]
        assert c["tol"] > 0 and 0 <= c["err"] <= c["tol"], (r["id"], r["pass"], c)
    assert doc["summary"]["all_passed"] is True
    # the training steps compare a fastconv model with a pure torch twin built from the same weights
    for r in doc["results"]:
        if r["kind"] == "train":
            assert r["check"].get("model_source"), r["id"]


def test_list_suites(tmp_path):
    proc = _run(["--list"], tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("lenet5", "alexnet", "zfnet", "vgg16", "inception", "resnet", "train", "quick", "full"):
        assert f"{name}:" in proc.stdout


def test_unknown_suite_is_an_error(tmp_path):
    proc = _run(["--suite", "nope"], tmp_path, timeout=120)
    assert proc.returncode == 2 and "unknown suite" in proc.stderr


def test_suites_have_real_shapes():
    from fastconv.bench import get_suite
    cases = {f"{c.net}/{c.name}": c for c in get_suite("full")}
    a1 = cases["alexnet/conv1"]
    assert (a1.P, a1.Q, a1.K) == (55, 55, 96)
    assert cases["alexnet/conv3"].H == 11 and cases["alexnet/conv5"].P == 5
    assert cases["lenet5/conv2"].P == 10
    assert cases["vgg16/conv1_2"].P == 224
    assert cases["resnet/down 3x3/2 64-128"].P == 28
    assert cases["inception/3a pool"].P == 28
    assert any(c.kind == "train" for c in cases.values())


_FAULTS = """
import resource, sys, torch
from fastconv.bench.runner import steady_heap
heap = steady_heap()
torch.set_num_threads(1)
x = torch.randn(32, 32, 16, 16)
w = torch.randn(32, 32, 3, 3)
big = torch.randn(10 << 20)  # 40 MiB: beyond glibc's largest mmap threshold
print(heap)
for name, fn in (("conv", lambda: torch.conv2d(x, w, None, 1, 1)), ("relu 40 MiB", lambda: torch.relu(big))):
    for _ in range(10):
        fn()
    a = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        fn()
    print(name, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - a) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_steady_heap_stops_page_faults(tmp_path):
    # With glibc's defaults torch's conv here faults ~460 pages in per call (its output and reorder buffers go
    # back to the kernel when freed) and a 40 MiB relu ~10000 (its own mapping, unmapped when freed); the
    # benchmark's steady heap must keep them, or its timings measure page faults instead of kernels.
    proc = subprocess.run([sys.executable, "-c", _FAULTS], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    heap, *lines = proc.stdout.strip().split("\n")
    assert heap.startswith("steady"), heap
    assert len(lines) == 2
    for line in lines:
        name, faults = line.rsplit(" ", 1)
        assert float(faults) < 1.0, f"{name}: {faults} page faults per call with {heap}"


def test_target_table_never_prints_a_miss_as_the_goal():
    from fastconv.bench import report
    targets = [dict(target="training steps: ratio", goal=1.0, value=0.9969, met=False, n=2, how="min"),
               dict(target="pooling fwd+bwd: % copy bandwidth", goal=50.0, value=49.996, met=False, n=26, how="min"),
               dict(target="conv forward, large layers: geomean ratio", goal=0.9, value=0.9712, met=True, n=25,
                    how="geomean"),
               dict(target="pooling fwd+bwd: ratio", goal=5.0, value=0.004, met=False, n=26, how="min")]
    _, _, rows = report._summary_rows({"summary": dict(groups=[], targets=targets)})
    assert [r[1] for r in rows] == ["0.997x", "49.996%", "0.97x", "<0.01x"]
    assert [r[3] for r in rows] == ["missed", "missed", "met", "missed"]


class _PhasedTimer:
    """A fake CPU timer on a machine whose load changes between repeats: each call 'takes' its side's base time
    times the load of the current phase, and the phase moves on every second sample (one repeat of the pair)."""
    device = "cpu"

    def __init__(self, loads):
        self.loads, self.samples = loads, 0

    def once(self, fn):
        return fn(1.0)

    def sample(self, fn, inner):
        load = self.loads[(self.samples // 2) % len(self.loads)]
        self.samples += 1
        return fn(load)


def test_paired_ratios_see_through_a_changing_load():
    from fastconv.bench import runner
    cfg = runner.TimingConfig(warmup=1, warmup_s=0.0, min_reps=12, max_reps=12, budget_s=0.0, min_sample_s=0.0)
    timer = _PhasedTimer([1.0, 3.0, 1.5, 1.0, 2.5])
    speedup = [1.5, 1.2, 1.8, 1.4]  # b / a of repeat i: speedup[i % 4]
    fa = lambda load: 0.002 * load  # noqa: E731
    fb = lambda load: 0.002 * load * speedup[(timer.samples - 1) // 2 % 4]  # noqa: E731
    sa, sb, pairs = runner.time_pair(fa, fb, cfg, timer)
    assert sa["reps"] == sb["reps"] == pairs["n"] == 12
    expect = statistics.quantiles([speedup[i % 4] for i in range(12)], n=4)
    assert (pairs["q1"], pairs["median"], pairs["q3"]) == pytest.approx((expect[0], expect[1], expect[2]))
    assert sa["q3_ms"] / sa["q1_ms"] > 1.4  # each side alone is spread by the load
    assert sb["median_ms"] / sa["median_ms"] != pytest.approx(expect[1])  # the ratio of medians mixes the two


def _bwd_row(layer, cls, ratio, q1, q3, pss="backward-data"):
    return dict(id=f"net/{layer}", net="net", layer=layer, kind="conv", cls=cls, params={}, metric="GFLOP/s",
                pct_peak=50.0, ratio=ratio, ratio_pairs=dict(median=ratio, q1=q1, q3=q3, n=9), **{"pass": pss},
                check=dict(passed=True))


def test_backward_targets_by_layer_and_by_class():
    from fastconv.bench import report
    rows = [_bwd_row("a", "large", 0.90, 0.85, 0.95), _bwd_row("b", "large", 1.20, 1.1, 1.3),
            _bwd_row("c", "small", 0.97, 0.93, 1.02), _bwd_row("d", "small", 1.5, 1.4, 1.6),
            _bwd_row("e", "other", 1.05, 1.0, 1.1)]
    targets = {t["target"]: t for t in report.summarize({"results": rows})["targets"]}
    every = targets["conv backward-data: every layer ratio"]
    assert every["value"] == pytest.approx(0.90) and every["met"] is False and every["n"] == 5
    assert every["below"] == ["net/a backward-data", "net/c backward-data"]
    assert every["below_beyond_noise"] == ["net/a backward-data"]  # c's paired q3 reaches 1.02
    per_class = targets["conv backward-data: geomean ratio of every layer class"]
    assert per_class["n"] == 3 and per_class["met"] is True
    assert per_class["value"] == pytest.approx(min((0.9 * 1.2) ** 0.5, (0.97 * 1.5) ** 0.5, 1.05))
    rows.append(_bwd_row("f", "other", 0.9, 0.8, 0.95))
    per_class = {t["target"]: t for t in report.summarize({"results": rows})["targets"]}[per_class["target"]]
    assert per_class["met"] is False and per_class["value"] == pytest.approx((1.05 * 0.9) ** 0.5)
    assert targets["conv backward-weight(+bias): every layer ratio"]["n"] == 0  # no weight rows: not judged


def test_results_without_pairs_do_not_read_as_beyond_noise():
    from fastconv.bench import report
    rows = [_bwd_row("a", "large", 0.9, 0.8, 0.95)]
    del rows[0]["ratio_pairs"]  # a result file written before the paired ratios were kept
    s = report.summarize({"results": rows})
    every = {t["target"]: t for t in s["targets"]}["conv backward-data: every layer ratio"]
    assert every["below"] == ["net/a backward-data"] and every["below_beyond_noise"] is None
    _, _, t_rows = report._summary_rows({"summary": s})
    assert [r[-1] for r in t_rows if r[0] == every["target"]] == ["1 (-)"]
