"""Build script: compiles the Cython kernels, with OpenMP where the compiler supports it.

OpenMP is probed by compiling and linking a tiny program with the candidate flags. When no
candidate works the extensions are built single-threaded and a loud warning is printed; the
package then reports ``fastrank.openmp_enabled() == False`` and warns at import.
"""

import os
import sys
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


def _openmp_flag_candidates(compiler_type):
    """Return (compile_args, link_args) pairs to try, most likely first."""
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        # Apple clang needs libomp (Homebrew or bundled by cibuildwheel's before-build step).
        prefixes = [os.environ.get("LIBOMP_PREFIX", ""), "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
        for prefix in filter(None, prefixes):
            candidates.append(
                (
                    ["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                    [f"-L{prefix}/lib", "-lomp", f"-Wl,-rpath,{prefix}/lib"],
                )
            )
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    return candidates


def _compiles_with(compiler, compile_args, link_args):
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as handle:
            handle.write(OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        except Exception:  # any compiler or linker failure means "not this flag set"
            return False
    return True


class BuildExtWithOptionalOpenMP(build_ext):
    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        disabled = os.environ.get("FASTRANK_DISABLE_OPENMP", "") not in ("", "0")
        openmp = None
        if not disabled:
            for compile_args, link_args in _openmp_flag_candidates(compiler_type):
                if _compiles_with(self.compiler, compile_args, link_args):
                    openmp = (compile_args, link_args)
                    break
        if openmp is None:
            bar = "=" * 78
            print(
                f"\n{bar}\nWARNING: fastrank is being built WITHOUT OpenMP "
                f"({'disabled by FASTRANK_DISABLE_OPENMP' if disabled else 'the compiler does not support it'}).\n"
                "Training and evaluation will run on one thread only.\n"
                "On macOS install libomp (brew install libomp) and rebuild without pip's cache:\n"
                "pip install --no-cache-dir --force-reinstall fastrank\n"
                f"{bar}\n",
                file=sys.stderr,
            )
        if compiler_type == "msvc":
            optimise = ["/O2", "/fp:precise"]
        else:
            # -fno-math-errno lets sqrtf vectorise; no -ffast-math (keeps NaN checks and reproducibility),
            # no -march=native (wheels must run on any CPU of the target architecture).
            # -g0: Python's own CFLAGS ask for debug info, 5 of the 6.6 MB of the three modules.
            optimise = ["-O3", "-g0", "-fno-math-errno", "-Wno-unused-function", "-Wno-unreachable-code"]
        for ext in self.extensions:
            ext.extra_compile_args = optimise + (openmp[0] if openmp else [])
            ext.extra_link_args = list(openmp[1]) if openmp else []
        super().build_extensions()


def _extension(name):
    return Extension(
        f"fastrank.{name}",
        [f"fastrank/{name}.pyx"],
        include_dirs=[numpy.get_include(), "fastrank"],
        depends=["fastrank/_simd.h", "fastrank/_common.pxd"],
        # Built against NumPy 2 headers; the target keeps the extensions loadable by NumPy >= 1.23
        # (the runtime requirement in pyproject.toml) whatever default later NumPy releases pick.
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
            ("NPY_TARGET_VERSION", "NPY_1_23_API_VERSION"),
        ],
    )


setup(
    ext_modules=cythonize(
        [_extension("_sgd"), _extension("_ranking"), _extension("_sparse")],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOptionalOpenMP},
)
