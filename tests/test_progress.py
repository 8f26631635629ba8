"""Progress for logs and pipes, and third-party warnings kept out of it."""

from __future__ import annotations

import io
import tempfile
import warnings

from rich.console import Console

from vehiclust.progress import LineReporter, RichReporter, WarningTally, progress_line, reporter_for


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_reporter_writes_a_line_at_most_every_few_seconds_with_count_rate_and_elapsed():
    lines, clock = [], FakeClock()
    reporter = LineReporter(lines.append, every_s=5.0, clock=clock)
    with reporter.task("describe", 1000) as handle:
        for _ in range(100):  # 100 steps of 10 images, 0.5 s each: 50 s in all
            clock.now += 0.5
            handle.advance(10)
    assert lines[0] == "describe: started, 1,000 to do"
    assert lines[-1] == "describe: 1,000/1,000 (100%)  20.0/s  elapsed 0:50, done"
    middle = lines[1:-1]
    assert len(middle) == 10  # one per 5 s, not one per advance
    assert middle[0] == "describe: 100/1,000 (10%)  20.0/s  elapsed 0:05"


def test_plain_lines_carry_the_words_not_the_markup():
    lines = []
    LineReporter(lines.append).message("[yellow]warning:[/] skipped: /in/[abc]/a.pickle, [bold red]k=[2, 20][/]")
    assert lines == ["warning: skipped: /in/[abc]/a.pickle, k=[2, 20]"]


def test_progress_line_without_a_total_counts_only():
    assert progress_line("scan", 1234, None, 3725.0) == "scan: 1,234  0.3/s  elapsed 1:02:05"
    assert progress_line("scan", 0, 10, 0.0) == "scan: 0/10 (0%)  elapsed 0:00"


def test_a_console_that_is_not_a_terminal_gets_plain_lines():
    buffer = io.StringIO()
    log_console = Console(file=buffer, force_terminal=False)
    reporter = reporter_for(log_console)
    assert isinstance(reporter, LineReporter)
    with reporter.task("cluster [bold]x[/]", 3) as handle:
        handle.advance(3)
    assert "cluster [bold]x[/]: 3/3 (100%)" in buffer.getvalue()  # written as is, no markup
    assert isinstance(reporter_for(Console(file=io.StringIO(), force_terminal=True)), RichReporter)


def test_warning_tally_counts_what_python_would_show_and_names_each_kind_once():
    class ConvergenceWarning(UserWarning):
        pass

    tally = WarningTally().install()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):
                warnings.warn("lbfgs failed to converge\nsecond line", ConvergenceWarning)
            warnings.warn("invalid value encountered in divide", RuntimeWarning)
    finally:
        tally.uninstall()
    assert warnings.showwarning is not tally.record
    assert tally.summary() == [
        "4 warnings from the libraries vehiclust uses:",
        "  3 x ConvergenceWarning: lbfgs failed to converge",
        "  1 x RuntimeWarning: invalid value encountered in divide",
    ]
    assert WarningTally().summary() == []


def test_the_kernels_stderr_becomes_warnings():
    from vehiclust.report.notebook import KernelWarning, _warn_kernel_stderr

    with tempfile.TemporaryFile("w+") as stderr:
        stderr.write("[IPKernelApp] WARNING | Kernel is running over TCP without encryption.\n\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _warn_kernel_stderr(stderr)
    assert [(w.category, str(w.message)) for w in caught] == [
        (KernelWarning, "notebook kernel: [IPKernelApp] WARNING | Kernel is running over TCP without encryption.")]


def test_the_command_prints_plain_progress_and_names_warnings_once_at_the_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vehiclust.pipeline
    from vehiclust.cli import app
    from vehiclust.errors import VehiclustError

    def pipeline_that_warns(input, out, settings, reporter):
        with reporter.task("describe", 2) as handle:
            for _ in range(2):
                warnings.warn("Number of distinct clusters (3) found smaller than n_clusters (4).", UserWarning)
                handle.advance()
        raise VehiclustError("stopped here")

    monkeypatch.setattr(vehiclust.pipeline, "run_pipeline", pipeline_that_warns)
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(app, ["run", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[:2] == ["describe: started, 2 to do", lines[1]] and lines[1].startswith("describe: 2/2 (100%)")
    assert lines[1].endswith(", done") and lines[2].startswith("error: stopped here")
    assert lines[3:] == ["1 warning from the libraries vehiclust uses:",
                         "  1 x UserWarning: Number of distinct clusters (3) found smaller than n_clusters (4)."]


def test_the_sweep_reports_its_spaces_before_its_families(tmp_path):
    """At 416k rows one UMAP space takes minutes: a log shows that step, not a silent gap."""
    import numpy as np
    import pandas as pd

    from vehiclust.cluster import ClusterSettings, cluster
    from vehiclust.collection import collection_table
    from vehiclust.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    collection_table([f"{i}.jpg" for i in range(300)]).to_parquet(run.collection_path)
    run.save_descriptor("a", np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32),
                        {"name": "a", "kind": "imported", "invalid": {}})
    lines = []
    cluster(run, ["a"], ClusterSettings(k_min=2, k_max=3, algorithms=("kmeans",), preprocessing=("l2+pca", "std+pca")),
            LineReporter(lines.append, every_s=0.0))
    preparing = [line for line in lines if line.startswith("Preparing a (2 preprocessings)")]
    assert preparing[0].endswith("started, 2 to do") and preparing[-1].startswith("Preparing a (2 preprocessings): 2/2")
    assert lines.index(preparing[-1]) < next(i for i, line in enumerate(lines) if line.startswith("Clustering a"))
