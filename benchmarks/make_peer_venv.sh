#!/usr/bin/env bash
# Create the benchmark peer environment .bench-venv (repository root, gitignored)
# with LightFM (rectools-lightfm), implicit, numpy and scipy, then install
# fastrank itself into it; and a second environment .bench-venv-next (also
# gitignored) with lightfm-next, which installs a package named `lightfm` too and
# so cannot share .bench-venv with rectools-lightfm.
#
# Usage: benchmarks/make_peer_venv.sh [--recreate] [--peers-only] [--in-place] [--skip-next]
#
#   --recreate    delete existing .bench-venv and .bench-venv-next first
#   --peers-only  install only the peers (skip fastrank)
#   --in-place    build fastrank with a literal `pip install .` in the repository
#                 root. By default fastrank is built from a temporary snapshot of
#                 the working tree (tracked + untracked, non-ignored files), so the
#                 build does not write build/, *.egg-info or regenerated Cython
#                 sources into the checkout where an editable install may live.
#   --skip-next   do not create or update .bench-venv-next (lightfm-next)
#
# Environment: PYTHON (default python3) is the interpreter used to create the venvs.
#
# rectools-lightfm 1.17.3 ships as an sdist only; pip builds it from source with
# its own isolated build environment (needs a C compiler; it compiles with
# -ffast-math -march=native and OpenMP). No extra flags were needed with
# Python 3.11 + pip 25.
#
# lightfm-next (benchmarks/requirements-peers-next.txt, 1.19.0) is an sdist only
# as well, with the same -ffast-math -march=native + OpenMP flags, and pulls in
# requests and scikit-learn. numpy and scipy there are constrained to the versions
# in .bench-venv, so the LightFM and lightfm-next columns differ only in the peer.
# The benchmarks run it in a worker process with .bench-venv-next/bin/python
# (benchmarks/_lightfm_worker.py) on the same data. A failed build does not stop
# this script: it is reported, the end of pip's output is kept in
# .bench-venv-next/LIGHTFM_NEXT_BUILD_FAILED, and the benchmarks then show
# lightfm-next as "failed to build".
set -euo pipefail

recreate=0
peers_only=0
in_place=0
skip_next=0
for arg in "$@"; do
    case "$arg" in
        --recreate) recreate=1 ;;
        --peers-only) peers_only=1 ;;
        --in-place) in_place=1 ;;
        --skip-next) skip_next=1 ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "make_peer_venv.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.bench-venv"
venv_next="$repo_root/.bench-venv-next"
python="${PYTHON:-python3}"

trap 'echo "make_peer_venv.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

if [[ $recreate -eq 1 ]]; then
    for dir in "$venv" "$venv_next"; do
        if [[ -d "$dir" ]]; then
            echo ">> removing $dir"
            rm -rf "$dir"
        fi
    done
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

# lightfm-next in its own venv. Nothing in here stops the script: a failure is reported, recorded
# in $venv_next/LIGHTFM_NEXT_BUILD_FAILED and the function returns 1.
make_next_venv() {
    local marker="$venv_next/LIGHTFM_NEXT_BUILD_FAILED" log constraints status=0
    if [[ ! -x "$venv_next/bin/python" ]]; then
        echo ">> creating $venv_next with $("$python" --version 2>&1)"
        "$python" -m venv "$venv_next" || return 1
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/lightfm-next-pip.XXXXXX")"
    constraints="$(mktemp "${TMPDIR:-/tmp}/lightfm-next-constraints.XXXXXX")"
    "$venv/bin/python" -c 'import numpy, scipy; print("numpy==" + numpy.__version__); print("scipy==" + scipy.__version__)' \
        >"$constraints" || true
    echo ">> installing peers from benchmarks/requirements-peers-next.txt into $venv_next" \
         "(constraints: $(tr '\n' ' ' <"$constraints"))"
    "$venv_next/bin/python" -m pip install --quiet --upgrade pip >"$log" 2>&1 || true
    if ! "$venv_next/bin/python" -m pip install -r "$repo_root/benchmarks/requirements-peers-next.txt" \
            -c "$constraints" >>"$log" 2>&1; then
        status=1
        echo "make_peer_venv.sh: WARNING: pip could not build/install lightfm-next" >&2
    elif ! (cd / && "$venv_next/bin/python" - >>"$log" 2>&1 <<'EOF'
import importlib.metadata as metadata
import lightfm, numpy, scipy, scipy.sparse
from lightfm import LightFM
from lightfm.evaluation import auc_score, precision_at_k
LightFM(no_components=4).fit_partial(scipy.sparse.eye(3, format="coo", dtype="float32"), epochs=1)
print(">> lightfm-next OK:", metadata.version("lightfm-next"), "(imports as lightfm", lightfm.__version__ + ")",
      "| numpy", numpy.__version__, "| scipy", scipy.__version__, "| from", lightfm.__file__)
EOF
    ); then
        status=1
        echo "make_peer_venv.sh: WARNING: lightfm-next installed but does not import or train" >&2
    fi
    if [[ $status -eq 0 ]]; then
        grep '^>> lightfm-next OK' "$log" || true
        rm -f "$marker"
    else
        {
            echo "lightfm-next failed to build or import ($(date -u +%Y-%m-%dT%H:%MZ))"
            echo "python: $("$venv_next/bin/python" --version 2>&1); compiler (${CC:-cc}): $("${CC:-cc}" --version 2>&1 | head -n 1)"
            echo "--- last 60 lines of pip's output ---"
            tail -n 60 "$log"
        } >"$marker"
        tail -n 20 "$log" | sed 's/^/    /' >&2
        echo "make_peer_venv.sh: lightfm-next FAILED; the benchmarks will show it as 'failed to build'." \
             "Details: $marker" >&2
    fi
    rm -f "$log" "$constraints"
    return $status
}

if [[ $skip_next -eq 1 ]]; then
    echo ">> --skip-next: $venv_next left as it is"
else
    make_next_venv || echo ">> continuing without lightfm-next"
fi

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
if [[ -x "$venv_next/bin/python" && ! -e "$venv_next/LIGHTFM_NEXT_BUILD_FAILED" ]]; then
    echo ">> done: $venv_next (lightfm-next)"
fi
