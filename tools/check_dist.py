"""Check built distributions before they are installed or published.

    python tools/check_dist.py dist/fastrank-X.tar.gz [wheelhouse/fastrank-X-....whl ...]

sdist: must hold what a build needs (the .pyx kernels, the .pxd declarations, _simd.h, setup.py,
pyproject.toml, LICENSE) and no generated C, compiled objects or caches. Wheels: must hold the three
compiled extensions, LICENSE in the metadata, no generated C, and, when an sdist is checked in
the same call, every module of the sdist's fastrank/ tree (a subpackage missing from the packages
configuration would be left out of the wheel). Prints the sdist listing.
Python 3.9 compatible; standard library only.
"""

import re
import sys
import tarfile
import zipfile

SDIST_REQUIRED = [
    "setup.py",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "MANIFEST.in",
    "fastrank/__init__.py",
    "fastrank/_sgd.pyx",
    "fastrank/_ranking.pyx",
    "fastrank/_sparse.pyx",
    "fastrank/_common.pxd",
    "fastrank/_simd.h",
    "tests/conftest.py",
]
# Generated C from Cython, compiled objects and libraries, annotation HTML, bytecode and caches.
FORBIDDEN = re.compile(
    r"(\.(c|cpp|so|pyd|dylib|dll|o|obj|html|pyc|pyo)$)|(/__pycache__/)|(/\.pytest_cache/)|(/\.hypothesis/)"
)


def fail(message):
    print(f"check_dist: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check_sdist(path):
    with tarfile.open(path) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    roots = {name.split("/", 1)[0] for name in members}
    if len(roots) != 1:
        fail(f"{path}: expected one top-level directory, found {sorted(roots)}")
    root = roots.pop()
    relative = sorted(name.split("/", 1)[1] for name in members)
    print(f"{path}: {len(relative)} files")
    for name in relative:
        print(f"  {name}")
    missing = [name for name in SDIST_REQUIRED if name not in relative]
    if missing:
        fail(f"{path} lacks {missing}")
    forbidden = [name for name in relative if FORBIDDEN.search("/" + name)]
    if forbidden:
        fail(f"{path} contains generated or compiled files: {forbidden}")
    if "PKG-INFO" not in relative:
        fail(f"{path} ({root}/) has no PKG-INFO")
    return {name for name in relative if name.startswith("fastrank/") and name.endswith((".py", ".pyx", ".pxd", ".h"))}


def check_wheel(path, sdist_sources):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    missing = sorted(sdist_sources - set(names))
    if missing:
        fail(f"{path} lacks files of the sdist's fastrank/ tree (packages configuration?): {missing}")
    extensions = [n for n in names if re.match(r"fastrank/_(sgd|ranking|sparse)\..*\.(so|pyd)$", n)]
    if len(extensions) != 3:
        fail(f"{path}: expected the _sgd, _ranking and _sparse extensions, found {extensions}")
    generated = [n for n in names if n.startswith("fastrank/") and n.endswith((".c", ".cpp", ".html"))]
    if generated:
        fail(f"{path} contains generated sources: {generated}")
    if not any(re.search(r"\.dist-info/licenses/LICENSE$", n) for n in names):
        fail(f"{path} has no .dist-info/licenses/LICENSE")
    bundled = [n for n in names if ".libs/" in n or "/.dylibs/" in n or n.endswith(".dll")]
    print(f"{path}: {len(names)} files, extensions {extensions}, bundled libraries {bundled or 'none'}")


def main(paths):
    if not paths:
        fail("usage: check_dist.py SDIST_OR_WHEEL [...]")
    sdist_sources = set()
    for path in sorted(paths, key=lambda p: not p.endswith(".tar.gz")):  # sdists first
        if path.endswith(".tar.gz"):
            sdist_sources |= check_sdist(path)
        elif path.endswith(".whl"):
            check_wheel(path, sdist_sources)
        else:
            fail(f"{path}: neither an sdist (.tar.gz) nor a wheel (.whl)")
    print("check_dist: ok")


if __name__ == "__main__":
    main(sys.argv[1:])
