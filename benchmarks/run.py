"""Run every benchmark in one go and write benchmarks/RESULTS.md (what ``make bench`` does).

Each benchmark runs as its own process with this interpreter (normally ``.bench-venv``, where the
peers are installed) and prints markdown tables; this script collects them under a header that
describes the machine (CPU model, cores, compiler, OpenMP, instruction set), and draws the
training-throughput ratios as a PNG in ``benchmarks/plots/`` (when matplotlib is available).

When ``.bench-venv-next/bin/python`` exists (lightfm-next, made by ``make_peer_venv.sh``), the
training, hybrid and evaluation benchmarks get ``--lightfm-next-python`` with it and add a
lightfm-next column, measured in the same run by a worker process with that interpreter.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NEXT_PYTHON = os.path.join(REPO, ".bench-venv-next", "bin", "python")
SCRIPTS = ("train_throughput.py", "thread_scaling.py", "hybrid_throughput.py", "evaluation_speed.py", "debias.py",
           "cost_growth.py", "roofline.py", "techniques.py")


def machine_description():
    """Markdown lines describing this machine and the fastrank build."""
    import fastrank

    sys.path.insert(0, HERE)
    from _common import core_round_trip_ns, format_round_trip

    round_trip = format_round_trip(core_round_trip_ns())
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- compiler: {sysconfig.get_config_var('CC') or 'unknown'}",
        f"- fastrank {fastrank.__version__}: OpenMP {'on' if fastrank.openmp_enabled() else 'off'}, "
        f"inner loops {fastrank.instruction_set}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- cache-line round trip between the first two CPUs at start: {round_trip} "
        "(`core_latency.c`; on a virtual machine it moves with where the host places the CPUs, and "
        "multi-thread timings with it: see the thread-scaling tables)",
    ]


def run(script, arguments, timeout):
    """Run one benchmark script; returns its output (stdout and stderr) and exit code."""
    command = [sys.executable, os.path.join(HERE, script), *arguments]
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    print(completed.stdout[-4000:], flush=True)
    if completed.returncode:
        print(completed.stderr[-4000:], file=sys.stderr, flush=True)
    return completed.stdout, completed.returncode


def plot_training(json_path, output):
    """Bar chart of fastrank / LightFM (and fastrank / lightfm-next) throughput per loss and data set."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with open(json_path) as stream:
        records = json.load(stream)["results"]
    # the first table is measured in rounds: a cell's rate is the median of its rounds, as in the table
    measured = {}
    for r in records:
        if r.get("threads") == 1 and r.get("positives_per_s"):
            measured.setdefault((r["library"], r["dataset"], r["loss"]), []).append(r["positives_per_s"])
    rates = {key: statistics.median(values) for key, values in measured.items()}
    labels, ratios, next_ratios = [], [], []
    for (library, dataset, loss), rate in sorted(rates.items()):
        peer = rates.get(("lightfm", dataset, loss))
        if library == "fastrank" and rate and peer:
            labels.append(f"{dataset}\n{loss}")
            ratios.append(rate / peer)
            next_rate = rates.get(("lightfm-next", dataset, loss))
            next_ratios.append(rate / next_rate if next_rate else 0.0)
    if not ratios:
        return None
    os.makedirs(output, exist_ok=True)
    figure, axis = plt.subplots(figsize=(9, 4))
    positions = list(range(len(ratios)))
    if any(next_ratios):
        axis.bar([x - 0.2 for x in positions], ratios, width=0.4, label="fastrank / LightFM (rectools-lightfm)")
        axis.bar([x + 0.2 for x in positions], next_ratios, width=0.4, label="fastrank / lightfm-next")
        axis.legend(fontsize=8)
        axis.set_ylabel("fastrank / peer positives per second (1 thread)")
    else:
        axis.bar(positions, ratios)
        axis.set_ylabel("fastrank / LightFM positives per second (1 thread)")
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_xticks(positions, labels, fontsize=8)
    figure.tight_layout()
    path = os.path.join(output, "training_throughput_ratio.png")
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per benchmark")
    parser.add_argument("--only", default="", help="comma-separated script names to run (default: all)")
    parser.add_argument("--scaling-threads", default="",
                        help="thread counts for thread_scaling.py, e.g. 1,2,4,8,16 (default: its own)")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SCRIPTS):
        parser.error(f"--only: unknown {', '.join(sorted(only - set(SCRIPTS)))}; known: {', '.join(SCRIPTS)}")
    scaling = ["--threads", args.scaling_threads] if args.scaling_threads else []

    sections = ["# Benchmark results", "", *machine_description(), ""]
    # lightfm-next lives in its own venv (it is imported as `lightfm` too); the scripts measure it
    # in a worker process with that interpreter when they are given it
    next_args = ["--lightfm-next-python", NEXT_PYTHON] if os.path.exists(NEXT_PYTHON) else []
    if not next_args:
        sections += ["- lightfm-next: not installed (no .bench-venv-next; benchmarks/make_peer_venv.sh makes it)", ""]
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        json_path = os.path.join(scratch, "training.json")
        for title, script, arguments in [
            ("Training throughput", "train_throughput.py", ["--markdown", "--quiet", "--json", json_path, *next_args]),
            ("Thread scaling", "thread_scaling.py", ["--markdown", "--rounds", "3", *scaling]),
            ("Training throughput with side features", "hybrid_throughput.py", ["--markdown", *next_args]),
            ("Evaluation and recommendation", "evaluation_speed.py", ["--markdown", *next_args]),
            ("Popularity debiasing", "debias.py", ["--markdown"]),
            ("Cost growth and peak memory", "cost_growth.py", ["--markdown"]),
            ("Roofline floor", "roofline.py", ["--markdown"]),
            ("Kernel techniques, each switched off", "techniques.py", ["--markdown"]),
        ]:
            if only and script not in only:
                continue
            output, code = run(script, arguments, args.timeout)
            failures += code != 0
            shown = " ".join(os.path.relpath(a, REPO) if a == NEXT_PYTHON else a
                             for a in arguments if a not in (json_path, "--json"))
            # the scripts' "# ..." comment lines would render as headings: show them as quotes
            text = "\n".join("> " + line[2:] if line.startswith("# ") else line for line in output.strip().splitlines())
            sections += [f"## {title}", "", f"`python benchmarks/{script} {shown}`", "",
                         text if code == 0 else f"FAILED (exit code {code})", ""]
        if os.path.exists(json_path):
            plot = plot_training(json_path, os.path.join(HERE, "plots"))
            if plot:
                sections += [f"![training throughput ratio](plots/{os.path.basename(plot)})", ""]
    with open(args.output, "w") as stream:
        stream.write("\n".join(sections) + "\n")
    print(f"wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
