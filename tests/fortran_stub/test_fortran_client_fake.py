"""The Fortran client and driver against a doc-only ML side (tests/mpi_scripts/fortran_fake_server.py, written from
docs/coupling-protocol.md alone): the hello carries what the doc says, the driver's forecasts equal the Python
CoarseModel's bit for bit, tiles (also unequal) are the exact pieces of the untiled fields, a refusal stops both
sides with their messages, and a killed Fortran rank ends the job."""
from __future__ import annotations

import numpy as np
import pytest

from tests.fortran_stub import fortran_jobs as fj

pytestmark = pytest.mark.mpi
VARS = ["sic", "sit", "snt", "siu", "siv"]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fortran_fake")
    config = fj.write_case(tmp)
    kit = fj.write_kit(config, tmp / "kit")
    job = fj.mpmd(2, [str(kit)], fj.fake_command(tmp / "untiled.npz"), tmp)
    assert job.returncode == 0, job.stderr[-3000:]
    return {"tmp": tmp, "kit": kit, "config": config, "job": job, "untiled": dict(np.load(tmp / "untiled.npz"))}


def test_hello_follows_the_doc(case):
    out = case["job"].stdout
    assert ("hello from 0: [20250607, 1, 16, 16, 1, 16, 1, 16, 0, 3, 5, 0, 0, 6, 3, 0] "
            "codes [1, 2, 3, 4, 5, 1, 2, 2, 3, 3] dx 16000.0") in out
    assert "hello from 1: [20250607, 1, 16, 16, 1, 16, 1, 16, 3, 3, 5, 0, 0, 6, 3, 0]" in out
    assert out.count("icecorr driver timing: rank") == 2


def test_forecasts_equal_the_python_model_bit_for_bit(case):
    from coupling.bridge import CoarseModel
    from coupling.forcing import open_forcing
    from coupling.member_fields import read_fields
    from coupling.pairs import initial_states_from_pairs
    from tests.mpi_scripts import case as small

    got = case["untiled"]
    forcing = open_forcing(str(case["tmp"] / "pairs.nc"))
    states = initial_states_from_pairs(case["tmp"] / "pairs.nc", fj.STARTS)
    for slot in range(fj.MEMBERS * len(fj.STARTS)):
        w = slot // fj.MEMBERS
        rank, local = divmod(slot, fj.MEMBERS)  # 6 slots over 2 ranks: 3 each
        model = CoarseModel(small.grid(fj.N))
        model.set_state(states[w])
        ini = np.zeros((5, fj.N, fj.N))
        read_fields(model, VARS, ini)
        assert np.array_equal(got[f"p{rank}_k0_s-1"][local, 0], ini)
        for n in range(fj.STEPS):
            ref = np.zeros((2, 5, fj.N, fj.N))
            read_fields(model, VARS, ref[0])
            model.step(*forcing.pair(fj.STARTS[w] + n))
            read_fields(model, VARS, ref[1])
            assert np.array_equal(got[f"p{rank}_k1_s{n}"][local], ref), (slot, n)


@pytest.mark.parametrize("layout", ["tiles_y = 2, tiles_x = 2",
                                    "tiles_y = 2, tiles_x = 2, row_ends = 5, 16, col_ends = 11, 16"])
def test_tiles_are_the_pieces_of_the_untiled_fields(case, layout):
    tmp = case["tmp"]
    name = "unequal" if "ends" in layout else "equal"
    job = fj.mpmd(4, [str(case["kit"]), fj.overrides(tmp, name, layout)], fj.fake_command(tmp / f"{name}.npz"), tmp)
    assert job.returncode == 0, job.stderr[-3000:]
    tiled, untiled = dict(np.load(tmp / f"{name}.npz")), case["untiled"]
    shapes = set()
    for n in range(fj.STEPS):
        full = np.concatenate([untiled[f"p0_k1_s{n}"], untiled[f"p1_k1_s{n}"]])
        for p in range(4):
            j0, j1, i0, i1, first, count = tiled[f"p{p}_tile"]
            shapes.add((j1 - j0 + 1, i1 - i0 + 1))
            assert np.array_equal(tiled[f"p{p}_k1_s{n}"], full[first:first + count, :, :, j0 - 1:j1, i0 - 1:i1])
    assert len(shapes) == (4 if name == "unequal" else 1)


def test_refusal_prints_on_both_sides_and_aborts(case):
    tmp = case["tmp"]
    job = fj.mpmd(2, [str(case["kit"]), fj.overrides(tmp, "v2", "hello_version = 2")],
                  fj.fake_command(tmp / "refused.npz", "--refuse", "protocol version 2 is not spoken here"), tmp)
    assert job.returncode != 0
    assert "refused the start-up (status 1): protocol version 2 is not spoken here" in job.stderr
    assert "ML rank: refused: protocol version 2" in job.stderr
    assert not (tmp / "refused.npz").exists()


def test_killed_fortran_rank_ends_the_job(case):
    tmp = case["tmp"]
    job = fj.mpmd(2, [str(case["kit"]), fj.overrides(tmp, "die", "die_at_step = 1, die_rank = 1")],
                  fj.fake_command(tmp / "died.npz"), tmp)
    assert job.returncode != 0
    assert "physics rank 1 kills itself at step 1" in job.stderr
    assert "exited on signal 9" in job.stderr
    assert job.seconds < 30


def test_c_header_and_bind_c_layer(tmp_path):
    """A C program built against icecorr_client.h and the client library talks the protocol too (C order)."""
    import shutil
    import subprocess

    from fortran_stub.client_paths import compile_flags, link_flags

    if shutil.which("mpicc") is None or shutil.which("mpifort") is None:
        pytest.skip("mpicc/mpifort not installed")
    src = fj.MPI_SCRIPTS.parent / "fortran_stub" / "c_client" / "c_client_check.c"
    exe = tmp_path / "c_client_check"
    subprocess.run(["mpicc", *compile_flags().split(), "-c", str(src), "-o", str(tmp_path / "c.o")], check=True)
    subprocess.run(["mpifort", str(tmp_path / "c.o"), *link_flags().split(), "-o", str(exe)], check=True)
    job = fj.mpmd_program(1, [str(exe)], fj.fake_command(tmp_path / "c.npz"), tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "c client ok: handle 0, 2 exchanged, model ranks 1" in job.stdout
    got = np.load(tmp_path / "c.npz")["p0_k1_s0"]            # (slots, 2, vars, ny, nx)
    v, j, i = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    assert np.array_equal(got[0, 0], 0.5 + v + 0.01 * j + 0.001 * i)
    assert np.array_equal(got[0, 1], 0.5 + v + 0.01 * j + 0.001 * i + 0.25)
