"""CF compliance of any NetCDF file, by the IOOS compliance checker (pip `compliance-checker`, its `cf:1.10` suite).

`cf_errors(path)` lists the failed checks of high priority ("errors" in the checker's report), `cf_issues(path,
"medium")` those of medium priority and above (warnings), `format_issues` one line per issue for an assertion
message. The checker ranks each result high (3), medium (2) or low (1); a check that raises is reported as a high
issue. It ships the CF standard-name table and runs offline: a network connection it attempts (e.g. to fetch
another table version named by a `standard_name_vocabulary` attribute) fails and is reported as a NetworkUsed error,
so a test never depends on the network.

    from tests.helpers.cf_check import cf_errors, format_issues
    assert not cf_errors(path), format_issues(cf_errors(path))

or from a shell: `python -m tests.helpers.cf_check out.nc [more.nc …] [--medium]` (exit 1 on any error).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Iterator
from unittest import mock

#: the CF version icecorr's files declare (`Conventions = "CF-1.10"`)
STANDARD = "cf:1.10"
PRIORITIES = {3: "high", 2: "medium", 1: "low"}


class NetworkUsed(RuntimeError):
    """The checker tried to open a network connection (it must run offline)."""


@dataclass(frozen=True)
class CFIssue:
    """One failed check: its priority ('high', 'medium', 'low'), the checker's section name, its messages."""

    priority: str
    check: str
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return f"[{self.priority}] {self.check}: {'; '.join(self.messages)}"


@contextlib.contextmanager
def no_network() -> Iterator[list[str]]:
    """Within the block every socket connection fails; yields the list of addresses that were attempted."""
    attempts: list[str] = []

    def refuse(sock, address, *args, **kwargs):
        attempts.append(str(address))
        raise OSError("network disabled while checking CF compliance")

    def refuse_create(address, *args, **kwargs):
        attempts.append(str(address))
        raise OSError("network disabled while checking CF compliance")

    with mock.patch.object(socket.socket, "connect", refuse), \
            mock.patch.object(socket.socket, "connect_ex", refuse), \
            mock.patch.object(socket, "create_connection", refuse_create), \
            mock.patch.object(socket, "getaddrinfo", refuse_create):  # no name look-up either
        yield attempts


@functools.lru_cache(maxsize=1)
def check_suite():
    """The compliance checker's suite with its checkers loaded (once per process: loading takes a second)."""
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its ioos_sos checker announces its removal
        suite.load_all_available_checkers()
    return suite


def cf_issues(path: str | os.PathLike, min_priority: str = "low", standard: str = STANDARD) -> list[CFIssue]:
    """Every failed check of `standard` on the NetCDF file `path` at `min_priority` or above, highest first."""
    floor = {name: level for level, name in PRIORITIES.items()}[min_priority]
    suite = check_suite()
    noise = io.StringIO()  # the checker prints which standard-name table it uses
    with no_network() as attempts, contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Problem fetching standard name table": NetworkUsed says it
        ds = suite.load_dataset(os.fspath(path))
        try:
            results = suite.run_all(ds, [standard])
        finally:
            ds.close()
    if attempts:
        raise NetworkUsed(f"the CF checker tried to reach {', '.join(attempts)} while checking {path}")
    if standard not in results:
        raise ValueError(f"the compliance checker has no suite {standard!r}")
    groups, crashed = results[standard]
    issues = [CFIssue("high", name, (f"the check raised {type(exc).__name__}: {exc}",))
              for name, (exc, _tb) in crashed.items()]
    issues += [CFIssue(PRIORITIES[g.weight], str(g.name), tuple(messages_of(g)) or ("failed",))
               for g in groups if g.weight >= floor and g.value[1] > 0 and g.value[0] < g.value[1]]
    order = {name: level for level, name in PRIORITIES.items()}
    return sorted(issues, key=lambda i: -order[i.priority])


def messages_of(result) -> list[str]:
    """The messages of a checker result and of its failed children (grouped results keep theirs there)."""
    found = [str(m) for m in result.msgs]
    for child in result.children or []:
        if child.value[1] > 0 and child.value[0] < child.value[1]:
            found += messages_of(child)
    return found


def cf_errors(path: str | os.PathLike, standard: str = STANDARD) -> list[CFIssue]:
    """The high-priority failures ("errors") of `standard` on `path`: a CF-compliant file has none."""
    return cf_issues(path, "high", standard)


def format_issues(issues: list[CFIssue], path: str | os.PathLike | None = None) -> str:
    """One line per issue, under the file's name if given."""
    head = [f"{path}:"] if path is not None else []
    return "\n".join(head + [f"  {issue}" for issue in issues])


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.helpers.cf_check FILE… [--medium]`: each file's issues; exit 1 if any has an error."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    floor = "medium" if "--medium" in args else "high"
    failed = False
    for path in [a for a in args if a != "--medium"]:
        issues = cf_issues(path, floor)
        failed |= any(i.priority == "high" for i in issues)
        print(format_issues(issues, path) if issues else f"{path}: no {floor}-priority CF issue")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
