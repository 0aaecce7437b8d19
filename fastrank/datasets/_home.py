"""Where datasets live on disk, and how they get there.

The data home is the ``data_home`` argument, else ``$FASTRANK_DATA``, else ``~/fastrank_data``.
Downloads use the standard library (``urllib``), stream to a temporary file in the destination's
own directory, are checked (SHA-256 when a checksum is known, and an optional content check),
and only then renamed into place with ``os.replace``: an interrupted or rejected download never
leaves a partial file under the final name.
"""

import hashlib
import os
import tempfile
from urllib.request import urlopen  # module attribute so tests can substitute an offline opener

__all__ = ["get_data_home"]

ENVIRONMENT_VARIABLE = "FASTRANK_DATA"
DEFAULT_HOME = os.path.join("~", "fastrank_data")
_CHUNK = 1 << 16
_TIMEOUT_S = 60


def get_data_home(data_home=None):
    """Resolve the directory that holds fastrank's datasets.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        Used when given; else ``$FASTRANK_DATA`` when set and non-empty; else ``~/fastrank_data``.
        ``~`` is expanded. The directory is not created (downloads create it).

    Returns
    -------
    str
        The absolute path.
    """
    if data_home is None:
        data_home = os.environ.get(ENVIRONMENT_VARIABLE) or DEFAULT_HOME
    return os.path.abspath(os.path.expanduser(os.fspath(data_home)))


def missing_error(what, looked_for, download_if_missing):
    """The ``OSError`` raised when a dataset is not on disk and may not be downloaded."""
    places = " or ".join(str(path) for path in looked_for)
    return OSError(
        f"{what} was not found (looked for {places}) and download_if_missing={download_if_missing}; "
        f"put the files there, point data_home or ${ENVIRONMENT_VARIABLE} at a directory that has them, "
        "or pass download_if_missing=True"
    )


def download(url, destination, sha256=None, validate=None):
    """Download ``url`` to ``destination`` atomically.

    Parameters
    ----------
    url : str
    destination : str or os.PathLike
        Final path; its directory is created if needed.
    sha256 : str, optional
        Expected hex SHA-256 of the whole file; a mismatch rejects the download.
    validate : callable, optional
        Called with the temporary file's path before it is moved into place; it raises to reject
        the file (for downloads without a published checksum).

    Returns
    -------
    str
        ``destination``.

    Raises
    ------
    OSError
        If the transfer fails, the checksum differs or ``validate`` rejects the file. The
        temporary file is removed and nothing is written under ``destination``.
    """
    destination = os.fspath(destination)
    directory = os.path.dirname(os.path.abspath(destination))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(destination) + ".",
                                         suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as output:
            with urlopen(url, timeout=_TIMEOUT_S) as response:
                status = getattr(response, "status", 200)
                if status is not None and status != 200:
                    raise OSError(f"HTTP status {status}")
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    output.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise OSError(f"SHA-256 mismatch: expected {sha256}, got {digest.hexdigest()}")
        if validate is not None:
            validate(temporary)
        os.replace(temporary, destination)
    except BaseException as error:
        try:
            os.remove(temporary)
        except OSError:
            pass
        if isinstance(error, Exception):
            raise OSError(f"downloading {url} to {destination} failed: {error}") from error
        raise
    return destination
