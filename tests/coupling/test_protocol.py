"""The coupling protocol without MPI: buffer layouts of docs/coupling-protocol.md, the code tables against the doc,
and every refusal of the hello checks with its message."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from coupling.handshake import HandshakeError, ServerTerms, check_hellos
from coupling.protocol import (MAGIC, UNIT_CODES, VARIABLE_CODES, VERSION, Hello, Reply, codes_of, decode_text,
                               encode_text)
from tests.helpers.paths import REPO

ML = ["sic", "sit", "snt", "siu", "siv"]
UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}


def hello(**kw) -> Hello:
    base = dict(ny=16, nx=12, dx=16_000.0, variables=codes_of(ML, "variable"),
                units=tuple(UNIT_CODES[UNITS[v]] for v in ML), first_slot=0, n_slots=2)
    return Hello(**{**base, **kw})


def terms(**kw) -> ServerTerms:
    return ServerTerms(**{**dict(variables=ML, units=UNITS, total_slots=2, n_steps=3, ml_of={0: 9, 1: 9, 2: 9,
                                                                                             3: 9}), **kw})


def test_hello_layout_and_round_trip():
    h = hello(state=codes_of(["sic", "sivol"], "state"), state_units=(1, 2), j0=3, j1=8, i0=1, i1=12,
              first_slot=4, n_slots=2, n_extras=7, total_slots=8, n_steps=5, first_step=2)
    ints, reals = h.encode()
    assert ints.dtype == np.int32 and reals.dtype == np.float64
    assert ints.size == 16 + 2 * 5 + 2 * 2 and reals.tolist() == [16_000.0, 0.0, 0.0, 0.0]
    assert ints[:16].tolist() == [MAGIC, VERSION, 16, 12, 3, 8, 1, 12, 4, 2, 5, 2, 7, 8, 5, 2]
    assert ints[16:21].tolist() == [1, 2, 3, 4, 5] and ints[21:26].tolist() == [1, 2, 2, 3, 3]
    assert ints[26:].tolist() == [1, 7, 1, 2]
    assert Hello.decode(ints, reals) == h
    assert h.tile == (slice(2, 8), slice(0, 12)) and h.tile_shape == (6, 12) and h.tiled
    assert not hello().tiled and hello().j1 == 16
    with pytest.raises(ValueError, match="does not match n_vars=5"):
        Hello.decode(ints[:-1], reals)


def test_reply_and_text_round_trip():
    r = Reply(0, n_steps=4, restart_interval=2, perturbs=True, writer=3, exchange=(1, 2, 3))
    buf = r.encode()
    assert buf.tolist() == [0, VERSION, 4, 2, 1, 3, 0, 3, 1, 2, 3]
    # a physics rank receives into a buffer sized for all its variables
    assert Reply.decode(np.concatenate([buf, np.zeros(4, np.int32)])) == r
    t = encode_text("physics rank 3: grid")
    assert t.dtype == np.int32 and t[0] == ord("p") and decode_text(t) == "physics rank 3: grid"


def test_code_tables_are_the_documents():
    doc = (REPO / "docs" / "coupling-protocol.md").read_text()
    rows = re.findall(r"\| (\d+) \| (\w+) \| [^|]+ \|", doc)
    assert {name: int(code) for code, name in rows} == VARIABLE_CODES
    units = dict((u, int(c)) for c, u in re.findall(r"(\d+) `([^`]+)`", doc.split("Units (int32 codes)")[1]
                                                     .split("\n\n")[0]))
    assert units == UNIT_CODES
    for tag in ("7101", "7102", "7103", "7104", "7105", "7200", "7201", "7202", "7203", "7204", str(MAGIC)):
        assert tag in doc


def test_accepted_hellos_agree_on_the_run():
    a = check_hellos({0: hello(j1=8), 1: hello(j0=9)}, terms())
    assert a.grid == (16, 12) and a.dx == 16_000.0 and a.variables == ML
    assert a.slots_of == {0: range(0, 2), 1: range(0, 2)} and a.tiles[1] == (slice(8, 16), slice(0, 12))


@pytest.mark.parametrize("hellos, kw, message", [
    ({0: hello(version=2)}, {}, "physics rank 0: protocol version 2 but the server speaks version 1"),
    ({0: hello(magic=1)}, {}, "physics rank 0: magic 1 is not the icecorr coupling protocol's 20250607"),
    ({0: hello(), 1: hello(nx=10, first_slot=1, n_slots=1)}, {},
     r"physics rank 1 has grid \(ny, nx\)=\(16, 10\), dx=16000.0 m but physics rank 0 has \(16, 12\)"),
    ({0: hello(), 1: hello(dx=16_000.1)}, {}, r"physics rank 1 has grid .*dx=16000.1 m but physics rank 0"),
    ({0: hello()}, {"grid": (32, 32)}, r"grid \(ny, nx\)=\(16, 12\) but the checkpoint was trained on \(32, 32\)"),
    ({0: hello(variables=(1, 2, 3, 4), units=(1, 2, 2, 3))}, {},
     r"physics rank 0 does not provide variable\(s\) \['siv'\] that the corrector corrects"),
    ({0: hello(units=(1, 12, 2, 3, 3))}, {}, "physics rank 0: variable 'sit' has units 'cm' \\(code 12\\) but the "
                                             "corrector expects 'm'"),
    ({0: hello(j1=8), 1: hello(j0=10)}, {}, "slot 0: the tiles leave a gap \\(12 cells, first at row 9, column 1\\)"),
    ({0: hello(j1=9), 1: hello(j0=9)}, {}, r"slot 0: the tiles of physics ranks \[0, 1\] overlap \(12 cells, first "
                                           r"at row 9"),
    ({0: hello(n_slots=1)}, {}, "slot 1 is held by no physics rank"),
    ({0: hello(i1=6), 1: hello(i0=7)}, {"ml_of": {0: 8, 1: 9}}, r"slot 0 is split over ML ranks \[8, 9\]"),
    ({0: hello(total_slots=3)}, {}, "physics rank 0: 3 slots in total but the server runs 2"),
    ({0: hello(n_steps=5)}, {}, "physics rank 0: 5 steps but the server runs 3"),
    ({0: hello(first_step=2)}, {}, "physics rank 0: first step 2 but the server starts at step 0"),
    ({0: hello(j1=8), 1: hello(j0=9)}, {"restart_interval": 1},
     r"physics rank 0 is tiled but restart states are asked for \(restart_interval=1\)"),
    ({0: hello(i1=13)}, {}, r"physics rank 0: tile rows 1..16, columns 1..13 lie outside the grid \(16, 12\)"),
])
def test_each_mismatch_is_refused_naming_rank_and_field(hellos, kw, message):
    with pytest.raises(HandshakeError, match=message):
        check_hellos(hellos, terms(**kw))


def test_restart_states_must_agree():
    s = dict(state=codes_of(["sic", "sit"], "state"), state_units=(1, 2), n_extras=3)
    a = check_hellos({0: hello(n_slots=1, **s), 1: hello(first_slot=1, n_slots=1, **s)}, terms(restart_interval=2))
    assert a.state_names == ["sic", "sit"] and a.state_units == {"sic": "1", "sit": "m"} and a.n_extras == 3
    other = dataclasses.replace(hello(first_slot=1, n_slots=1, **s), n_extras=4)
    with pytest.raises(HandshakeError, match=r"physics rank 1 has state variables \['sic', 'sit'\] \(4 extras\) but "
                                             r"physics rank 0 has \['sic', 'sit'\] \(3 extras\)"):
        check_hellos({0: hello(n_slots=1, **s), 1: other}, terms(restart_interval=2))
    with pytest.raises(ValueError, match="state variable 'age' has no code"):
        codes_of(["sic", "age"], "state variable")


def test_unit_codes_read_any_udunits_spelling():
    from coupling.protocol import UNIT_CODES, unit_code

    assert unit_code("m/s") == unit_code("m s-1") == UNIT_CODES["m s-1"]
    assert unit_code("kg/kg") == UNIT_CODES["1"]      # the first dimensionless entry
    assert unit_code("meter") == UNIT_CODES["m"] and unit_code("bananas") == 0
