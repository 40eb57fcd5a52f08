"""fastconv.bench: layer-by-layer and whole-training-step benchmarks of fastconv against torch.

    from fastconv import bench
    doc = bench.run_benchmark("quick")          # correctness check, then interleaved timing, median of repeats
    print(bench.format_table(doc))
    bench.write_json(doc, "out.json"); bench.write_markdown(doc, "out.md"); bench.plot(doc, "out.png")

CLI: ``fastconv bench [--suite NAME] [--device cpu|cuda] [--quick] [--json PATH] [--markdown PATH] [--plot PATH]
[--threads N]``. See benchmarks/README.md for what each column means.
"""
from .suites import SUITES, SUITE_HELP, get_suite, list_suites, case_id  # noqa: F401
from .peak import measure_peak, cpu_model, cpu_slug, device_slug  # noqa: F401
from .runner import run_benchmark, TimingConfig, tolerance  # noqa: F401
from .report import summarize, format_table, markdown, write_json, write_markdown, plot  # noqa: F401

__all__ = ["SUITES", "SUITE_HELP", "get_suite", "list_suites", "case_id", "measure_peak", "cpu_model", "cpu_slug",
           "device_slug", "run_benchmark", "TimingConfig", "tolerance", "summarize", "format_table", "markdown",
           "write_json", "write_markdown", "plot"]
