"""Run every benchmark in one go and write benchmarks/RESULTS.md (what ``make bench`` does).

Each benchmark runs as its own process with this interpreter (normally ``.bench-venv``, where the
peers are installed) and prints markdown tables; this script collects them under a header that
describes the machine (CPU model, cores, compiler, OpenMP, instruction set), and draws the
training-throughput ratios as a PNG in ``benchmarks/plots/`` (when matplotlib is available).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def machine_description():
    """Markdown lines describing this machine and the fastrank build."""
    import fastrank

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
    """Bar chart of fastrank / LightFM throughput per loss and data set."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with open(json_path) as stream:
        records = json.load(stream)["results"]
    rates = {(r["library"], r["dataset"], r["loss"]): r.get("positives_per_s")
             for r in records if r.get("threads") == 1}
    labels, ratios = [], []
    for (library, dataset, loss), rate in sorted(rates.items()):
        peer = rates.get(("lightfm", dataset, loss))
        if library == "fastrank" and rate and peer:
            labels.append(f"{dataset}\n{loss}")
            ratios.append(rate / peer)
    if not ratios:
        return None
    os.makedirs(output, exist_ok=True)
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.bar(range(len(ratios)), ratios)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(ratios)), labels, fontsize=8)
    axis.set_ylabel("fastrank / LightFM positives per second (1 thread)")
    figure.tight_layout()
    path = os.path.join(output, "training_throughput_ratio.png")
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per benchmark")
    args = parser.parse_args(argv)

    sections = ["# Benchmark results", "", *machine_description(), ""]
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        json_path = os.path.join(scratch, "training.json")
        for title, script, arguments in [
            ("Training throughput", "train_throughput.py", ["--markdown", "--quiet", "--json", json_path]),
            ("Training throughput with side features", "hybrid_throughput.py", ["--markdown"]),
            ("Evaluation and recommendation", "evaluation_speed.py", ["--markdown"]),
            ("Popularity debiasing", "debias.py", ["--markdown"]),
        ]:
            output, code = run(script, arguments, args.timeout)
            failures += code != 0
            shown = " ".join(a for a in arguments if a not in (json_path, "--json"))
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
