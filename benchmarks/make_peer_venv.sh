#!/usr/bin/env bash
# Create the benchmark peer environment .bench-venv (repository root, gitignored)
# with LightFM (rectools-lightfm), implicit, numpy and scipy, then install
# fastrank itself into it.
#
# Usage: benchmarks/make_peer_venv.sh [--recreate] [--peers-only] [--in-place]
#
#   --recreate    delete an existing .bench-venv first
#   --peers-only  install only the peers (skip fastrank)
#   --in-place    build fastrank with a literal `pip install .` in the repository
#                 root. By default fastrank is built from a temporary snapshot of
#                 the working tree (tracked + untracked, non-ignored files), so the
#                 build does not write build/, *.egg-info or regenerated Cython
#                 sources into the checkout where an editable install may live.
#
# Environment: PYTHON (default python3) is the interpreter used to create the venv.
#
# rectools-lightfm 1.17.3 ships as an sdist only; pip builds it from source with
# its own isolated build environment (needs a C compiler; it compiles with
# -ffast-math -march=native and OpenMP). No extra flags were needed with
# Python 3.11 + pip 25.
set -euo pipefail

recreate=0
peers_only=0
in_place=0
for arg in "$@"; do
    case "$arg" in
        --recreate) recreate=1 ;;
        --peers-only) peers_only=1 ;;
        --in-place) in_place=1 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "make_peer_venv.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.bench-venv"
python="${PYTHON:-python3}"

trap 'echo "make_peer_venv.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

if [[ $recreate -eq 1 && -d "$venv" ]]; then
    echo ">> removing $venv"
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    echo ">> creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --upgrade pip
echo ">> installing peers from benchmarks/requirements-peers.txt"
"${pip[@]}" install -r "$repo_root/benchmarks/requirements-peers.txt"

"$venv/bin/python" - <<'EOF'
import lightfm, implicit, numpy, scipy
from lightfm import LightFM
from implicit.cpu.bpr import BayesianPersonalizedRanking
print(">> peers OK: lightfm", lightfm.__version__, "| implicit", implicit.__version__,
      "| numpy", numpy.__version__, "| scipy", scipy.__version__)
EOF

if [[ $peers_only -eq 1 ]]; then
    echo ">> --peers-only: fastrank not installed"
    exit 0
fi

if [[ $in_place -eq 1 ]]; then
    echo ">> installing fastrank: pip install . (in $repo_root)"
    (cd "$repo_root" && "${pip[@]}" install .)
else
    snapshot="$(mktemp -d "${TMPDIR:-/tmp}/fastrank-src.XXXXXX")"
    trap 'rm -rf "$snapshot"' EXIT
    echo ">> installing fastrank from a snapshot of the working tree ($snapshot)"
    (cd "$repo_root" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -r cp --parents -t "$snapshot" 2>/dev/null || true)
    # cp fails for files listed by git but deleted from the working tree; check
    # that the essentials made it instead of trusting cp's exit status.
    for f in pyproject.toml fastrank/__init__.py; do
        if [[ ! -f "$snapshot/$f" ]]; then
            echo "make_peer_venv.sh: $f missing from the working tree; cannot build fastrank" >&2
            exit 1
        fi
    done
    "${pip[@]}" install "$snapshot"
fi

# Import from outside the repository so the installed copy is the one tested.
(cd / && "$venv/bin/python" -c \
    'import fastrank, sys; from fastrank import FastRank; print(">> fastrank OK:", getattr(fastrank, "__version__", "?"), "from", fastrank.__file__)')
echo ">> done: $venv"
