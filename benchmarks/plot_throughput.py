"""Plot the ``sim_throughput --sweep`` curve: scenario-steps/s against batch size, ours and the yardstick.

``python -m benchmarks.sim_throughput --sweep --threads 2 > sweep.jsonl``
``python -m benchmarks.plot_throughput sweep.jsonl [sweep_compile.jsonl ...] docs/throughput_cpu.png``

Reads JSON lines (one per batch size, other lines ignored) from one or more sweeps, writes a PNG with
matplotlib (one line per sweep, labelled eager or ``--compile`` from its records, and the first sweep's
yardstick), and prints each sweep's table as Markdown (so the figure can be documented without matplotlib).
"""

from __future__ import annotations

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, exit status 130
    from scenarios.commands import run_main

    run_main("benchmarks.plot_throughput", "python -m benchmarks.plot_throughput")

import json
from pathlib import Path

from benchmarks import cli


def read_sweep(path: str | Path) -> list[dict]:
    """The sweep's records (lines that parse as JSON objects with ``batch``), sorted by batch size."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "batch" in rec:
            rows.append(rec)
    return sorted(rows, key=lambda r: r["batch"])


def table(rows: list[dict]) -> str:
    """Markdown table: batch, ours, yardstick, ratio, peak memory."""
    out = ["| batch | scenario-steps/s | agent-steps/s | yardstick | ratio | peak MB |"]
    out.append("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        y = r.get("yardstick_scenario_steps_per_s")
        out.append(
            f"| {r['batch']} | {r['scenario_steps_per_s']:,.0f} | {r['agent_steps_per_s']:,.0f} | "
            f"{'-' if y is None else f'{y:,.0f}'} | {r.get('ratio_to_yardstick', '-')} | "
            f"{r.get('peak_memory_mb', '-')} |"
        )
    return "\n".join(out)


def label(rows: list[dict]) -> str:
    """The legend entry of one sweep: eager or ``--compile``, from its records."""
    return "driveselect, " + ("--compile" if rows[0].get("compile") else "eager") + " (policy + every metric)"


def plot(sweeps: list[list[dict]], out: str | Path) -> None:
    """Write the PNG (log-log axes: batch size, scenario-steps/s): one line per sweep, the first's yardstick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweeps[0]
    b = sorted({r["batch"] for s in sweeps for r in s})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for s in sweeps:
        ax.plot([r["batch"] for r in s], [r["scenario_steps_per_s"] for r in s], "o-", label=label(s))
    ys = [(r["batch"], r["yardstick_scenario_steps_per_s"]) for r in rows if "yardstick_scenario_steps_per_s" in r]
    if ys:
        ax.plot(*zip(*ys), "s--", label="yardstick proto_step.py (policy + 3 metrics)")
    dev = rows[0].get("device", "?")
    ax.set(xscale="log", yscale="log", xlabel="batch (scenes)", ylabel="scenario-steps/s",
           title=f"Closed-loop throughput, {dev}, {rows[0].get('threads', '?')} threads")
    ax.set_xticks(b, [str(x) for x in b])  # the measured sizes, labelled plainly
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


RECORD_KEYS = ("batch", "scenario_steps_per_s", "agent_steps_per_s")  # what the plot and the table read


@cli.one_line_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: write the PNG and print the tables (bad input: one line on stderr, exit status 2)."""
    p = cli.parser("python -m benchmarks.plot_throughput", __doc__.splitlines()[0])
    cli.flag(p, "sweep", "JSON lines from sim_throughput --sweep (one file per curve)", nargs="+", metavar="SWEEP")
    cli.flag(p, "out", "PNG to write (its folder must exist)", metavar="OUT")
    a = p.parse_args(argv)
    for path in a.sweep:
        cli.check_file("", path)
    if not Path(a.out).resolve().parent.is_dir():
        raise cli.BenchError(f"{a.out}: its folder {Path(a.out).resolve().parent} does not exist")
    if Path(a.out).is_dir():
        raise cli.BenchError(f"{a.out}: is a folder, not a file to write")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise cli.BenchError(f"{a.out}: matplotlib is needed to draw it (pip install matplotlib)") from None
    kind = Path(a.out).suffix.lower().lstrip(".")
    if kind and kind not in FigureCanvasAgg.get_supported_filetypes():
        raise cli.BenchError(f"{a.out}: matplotlib cannot write .{kind} files (use .png)")
    sweeps = [read_sweep(path) for path in a.sweep]
    for path, rows in zip(a.sweep, sweeps):
        if not rows:
            raise cli.BenchError(f"{path}: no sweep records (JSON lines with 'batch' from sim_throughput --sweep)")
        bad = next((r for r in rows if any(not isinstance(r.get(k), (int, float)) for k in RECORD_KEYS)), None)
        if bad is not None:
            missing = [k for k in RECORD_KEYS if not isinstance(bad.get(k), (int, float))]
            raise cli.BenchError(f"{path}: batch {bad.get('batch')!r}: not a sim_throughput record "
                                 f"({', '.join(missing)} missing or not a number)")
    plot(sweeps, a.out)
    for rows in sweeps:
        if len(sweeps) > 1:
            print(f"\n{label(rows)}\n")
        print(table(rows))
    return 0
