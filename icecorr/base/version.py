"""The installed icecorr version, recorded in every file and checkpoint the package writes."""
from __future__ import annotations


def package_version() -> str:
    """Installed icecorr version ('unknown' when running from a source tree without package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("icecorr")
    except PackageNotFoundError:
        return "unknown"
