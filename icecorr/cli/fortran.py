"""The Fortran route of coupling, on the command line:

    icecorr fortran-kit CONFIG.yaml --out DIR [--tiles TY TX] [key=value …]   inputs of the Fortran coarse driver
    icecorr client-flags [all|cflags|libs|driver|dir]                         how to build against the client

`fortran-kit` writes what fortran_stub/driver/icecorr_coarse_driver reads (coupling.fortran_kit) from the same couple
config `icecorr serve` reads, and prints the launch line. `client-flags` prints the flags a user's Fortran build
needs (like nc-config): `mpifort $(icecorr client-flags cflags) my_model.f90 $(icecorr client-flags libs)`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

FLAG_CHOICES = ("all", "cflags", "libs", "driver", "dir")


def cmd_fortran_kit(args) -> int:
    """`icecorr fortran-kit`: the Fortran driver's inputs from a couple config."""
    from coupling.fortran_kit import write_kit
    from fortran_stub.client_paths import driver_path
    from icecorr.base.config import load_config
    from icecorr.cli.runconfig import CoupleRunConfig

    from icecorr.inputs.state_file import StateFile

    cfg = load_config(CoupleRunConfig, args.config, args.overrides)
    initial = cfg.initial if cfg.initial_state is None else StateFile(cfg.initial_state, cfg.grid)
    out = write_kit(cfg.grid, cfg.physics, cfg.couple, initial, cfg.forcing or cfg.initial, Path(args.out),
                    tiles=tuple(args.tiles))
    ranks = max(1, args.tiles[0] * args.tiles[1])
    print(f"wrote {out}\nrun: mpiexec -n {ranks} {driver_path()} {out} : -n 1 icecorr serve {args.config}")
    return 0


def cmd_client_flags(args) -> int:
    """`icecorr client-flags`: compile/link flags of the Fortran client, or where the driver is."""
    from fortran_stub import client_paths as cp

    text = {"cflags": cp.compile_flags, "libs": cp.link_flags, "driver": lambda: str(cp.driver_path()),
            "dir": lambda: str(cp.client_dir())}
    if args.what == "all":
        for key in ("cflags", "libs", "driver"):
            print(f"{key}: {text[key]()}")
    else:
        print(text[args.what]())
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `fortran-kit` and `client-flags` on the CLI's subparsers."""
    p = sub.add_parser("fortran-kit", help="inputs of the standalone Fortran coarse driver from a couple config")
    p.add_argument("config", help="YAML config of `icecorr couple` / `icecorr serve`")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--out", required=True, help="folder for kit.nml and the binary inputs")
    p.add_argument("--tiles", nargs=2, type=int, default=[1, 1], metavar=("TY", "TX"),
                   help="tiles per member group (rows, columns): physics ranks = groups × TY × TX")
    p.set_defaults(func=cmd_fortran_kit, late_overrides=True)
    p = sub.add_parser("client-flags", help="compile/link flags of the Fortran coupling client, driver location")
    p.add_argument("what", nargs="?", choices=FLAG_CHOICES, default="all")
    p.set_defaults(func=cmd_client_flags)
