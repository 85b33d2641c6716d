"""`icecorr.base.config` and `icecorr.base.files` against the config and input-path faults of issue 21: a key given
twice, a file that is not UTF-8, a boolean where a number is meant, and an input path that is not a regular file."""
from __future__ import annotations

import os
from typing import Optional

import pytest

from icecorr.base.config import ConfigError, StrictConfig, load_config
from icecorr.base.files import describe_unreadable


class Inner(StrictConfig):
    count: int = 1
    ratio: float = 0.5
    flag: bool = False
    maybe: Optional[int] = None
    items: list[int] = [0]


class Outer(StrictConfig):
    inner: Inner = Inner()
    either: int | bool = 0


def load(tmp_path, text: str | bytes, *overrides: str) -> Outer:
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_config(Outer, path, overrides)


@pytest.mark.parametrize("text, where", [
    ("inner:\n  count: 1\n  count: 2\n", "'inner.count' (line 3; first given at line 2)"),
    ("inner: {count: 1}\ninner: {ratio: 2}\n", "'inner' (line 2; first given at line 1)"),
    ("either: 1\ninner:\n  items: [1]\n  flag: true\n  items: [2]\n", "'inner.items' (line 5; first given at line 3)"),
])
def test_duplicate_keys_are_refused(tmp_path, text, where):
    with pytest.raises(ConfigError, match="duplicate key") as exc:
        load(tmp_path, text)
    assert where in str(exc.value)


def test_anchors_aliases_and_merge_keys_are_not_duplicates(tmp_path):
    cfg = load(tmp_path, "inner: &b {count: 3, ratio: 0.25}\n")
    assert cfg.inner.count == 3
    # a merged mapping whose key is then given again is YAML's way to override: not a duplicate (the schema still
    # refuses the unknown top-level key that holds the anchor)
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):
        load(tmp_path, "defaults: &d {count: 3}\ninner:\n  <<: *d\n  count: 4\n")


def test_non_utf8_names_the_byte_and_its_place(tmp_path):
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at line 2, column 10\)"):
        load(tmp_path, b"inner:\n  count: \xff1\n")


@pytest.mark.parametrize("override, message", [
    ("inner.count=true", "'inner.count': Value error, true is a boolean, not an integer"),
    ("inner.maybe=false", "'inner.maybe': Value error, false is a boolean, not an integer"),
    ("inner.ratio=true", "'inner.ratio': Value error, true is a boolean, not a number"),
    ("inner.items=[1, false]", "'inner.items': Value error, [1, false] holds a boolean, not an integer"),
])
def test_booleans_are_not_numbers(tmp_path, override, message):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, "inner: {}\n", override)
    assert message in str(exc.value)


def test_booleans_pass_where_a_boolean_is_allowed(tmp_path):
    cfg = load(tmp_path, "inner: {flag: true}\neither: true\n", "inner.count=2")
    assert cfg.inner.flag is True and cfg.either is True and cfg.inner.count == 2


def test_describe_unreadable(tmp_path):
    regular = tmp_path / "f.nc"
    regular.write_bytes(b"x")
    os.symlink(regular, tmp_path / "link")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.mkfifo(tmp_path / "fifo")
    assert describe_unreadable(regular) is None and describe_unreadable(tmp_path / "link") is None
    assert describe_unreadable(tmp_path / "missing") == "does not exist"
    assert describe_unreadable(tmp_path) == "is a folder, not a file"
    assert "symbolic link loop" in describe_unreadable(tmp_path / "a")
    assert "which does not exist" in describe_unreadable(tmp_path / "dangling")
    assert describe_unreadable(tmp_path / "fifo") == "is a named pipe, not a file"
    assert "a parent in its path is a file" in describe_unreadable(regular / "x.nc")
    assert describe_unreadable("/dev/null") == "is a character device, not a file"
