"""The icecorr coupling protocol, version 1 (docs/coupling-protocol.md): tags, codes and the buffer layouts of the
hello and the reply. Every message is a plain int32 or float64 buffer, so a rank in any language can take part;
nothing here is pickled.

    Hello.decode(ints, reals) / hello.encode() -> (int32 array, float64 array)   physics rank -> its ML partner
    Reply.decode(ints) / reply.encode() -> int32 array                           ML partner -> physics rank
    encode_text(str) -> int32 array, decode_text(array) -> str                    error texts
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icecorr.base.units import same_units

MAGIC = 20250607
VERSION = 1

# start-up (doc §3, §4)
TAG_HELLO_INT, TAG_HELLO_REAL, TAG_REPLY, TAG_TEXT, TAG_ACK = 7101, 7102, 7103, 7104, 7105
# the cycle (doc §5)
TAG_HEADER, TAG_FIELDS, TAG_CORRECTED, TAG_STATE, TAG_EXTRAS = 7200, 7201, 7202, 7203, 7204

# header kinds (doc §5)
KIND_INITIAL, KIND_STEP, KIND_END, KIND_ABORT, KIND_RESTART = 0, 1, 2, 3, 4
KIND_NAMES = {KIND_INITIAL: "initial exchange", KIND_STEP: "step", KIND_END: "end", KIND_ABORT: "abort",
              KIND_RESTART: "restart state"}
# roles of the start-up allgather (doc §1)
ROLE_UNSTATED, ROLE_PHYSICS, ROLE_ML = -1, 0, 1
# reply status (doc §4)
STATUS_ACCEPTED, STATUS_REFUSED, STATUS_ERROR = 0, 1, 2

HELLO_FIXED = 16   # int32 entries of a hello before the code lists
HELLO_REALS = 4    # float64 entries of a hello: [dx (m), 0, 0, 0]
REPLY_FIXED = 8    # int32 entries of a reply before the exchanged codes

#: variable name -> int32 code (doc §2); a code is never reused, new variables get new numbers
VARIABLE_CODES = {"sic": 1, "sit": 2, "snt": 3, "siu": 4, "siv": 5, "damage": 6, "sivol": 7, "snvol": 8, "tsi": 9,
                  "tos": 10, "sig1": 11, "sig2": 12, "sig11": 13, "sig22": 14, "sig12": 15, "cohesion": 16}
#: units text -> int32 code (doc §2); 0 is "unknown"
UNIT_CODES = {"1": 1, "m": 2, "m s-1": 3, "degC": 4, "N m-1": 5, "Pa": 6, "K": 7, "kg kg-1": 8, "W m-2": 9,
              "kg m-2 s-1": 10, "s-1": 11, "cm": 12, "cm s-1": 13, "%": 14, "km": 15}
VARIABLE_NAMES = {c: n for n, c in VARIABLE_CODES.items()}
UNIT_NAMES = {c: n for n, c in UNIT_CODES.items()}


def variable_name(code: int) -> str:
    """The name of a variable code, or `code <n>` for one this version does not know."""
    return VARIABLE_NAMES.get(int(code), f"code {int(code)}")


def unit_code(units: str) -> int:
    """The code of a units text in any UDUNITS spelling ('m/s' is 'm s-1'; 0 = not in the table)."""
    text = str(units).strip()
    if text in UNIT_CODES:
        return UNIT_CODES[text]
    return next((code for name, code in UNIT_CODES.items() if same_units(text, name)), 0)


def unit_name(code: int) -> str:
    """The units text of a code ('unknown' for 0 or a code this version does not know)."""
    return UNIT_NAMES.get(int(code), "unknown")


def encode_text(text: str) -> np.ndarray:
    """An error text as int32 character codes (ASCII; anything else becomes '?')."""
    return np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.int32)


def decode_text(codes: np.ndarray) -> str:
    """Inverse of `encode_text`."""
    return bytes(int(c) & 0x7F for c in np.asarray(codes).ravel()).decode("ascii")


@dataclass(frozen=True)
class Hello:
    """What a physics rank tells its ML partner once (doc §3). Tile bounds are 1-based and inclusive."""

    ny: int
    nx: int
    dx: float                                   # m
    variables: tuple[int, ...]                  # variable codes exchanged every step (or all it can provide)
    units: tuple[int, ...]                      # their unit codes
    state: tuple[int, ...] = ()                 # variable codes of a restart state (empty: sends none)
    state_units: tuple[int, ...] = ()
    first_slot: int = 0
    n_slots: int = 0
    j0: int = 1
    j1: int = 0                                 # 0: the whole grid (ny)
    i0: int = 1
    i1: int = 0                                 # 0: the whole grid (nx)
    n_extras: int = 0                           # hidden restart values per slot
    total_slots: int = -1                       # -1: take the server's
    n_steps: int = -1                           # -1: take the server's
    first_step: int = 0
    magic: int = MAGIC
    version: int = VERSION
    reserved: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))

    def __post_init__(self):
        if self.j1 == 0:
            object.__setattr__(self, "j1", self.ny)
        if self.i1 == 0:
            object.__setattr__(self, "i1", self.nx)

    @property
    def slots(self) -> range:
        """The ensemble slots this rank holds."""
        return range(self.first_slot, self.first_slot + self.n_slots)

    @property
    def tile(self) -> tuple[slice, slice]:
        """0-based (rows, columns) slices of this rank's tile in the global grid."""
        return slice(self.j0 - 1, self.j1), slice(self.i0 - 1, self.i1)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(tile_ny, tile_nx) cells."""
        return self.j1 - self.j0 + 1, self.i1 - self.i0 + 1

    @property
    def tiled(self) -> bool:
        """True if the rank holds less than the whole grid."""
        return (self.j0, self.j1, self.i0, self.i1) != (1, self.ny, 1, self.nx)

    def encode(self) -> tuple[np.ndarray, np.ndarray]:
        """(TAG_HELLO_INT int32 buffer, TAG_HELLO_REAL float64 buffer)."""
        head = [self.magic, self.version, self.ny, self.nx, self.j0, self.j1, self.i0, self.i1, self.first_slot,
                self.n_slots, len(self.variables), len(self.state), self.n_extras, self.total_slots, self.n_steps,
                self.first_step]
        ints = np.array([*head, *self.variables, *self.units, *self.state, *self.state_units], dtype=np.int32)
        return ints, np.array([self.dx, *self.reserved], dtype=np.float64)

    @classmethod
    def decode(cls, ints: np.ndarray, reals: np.ndarray) -> "Hello":
        """A hello from its two buffers; ValueError if their lengths do not match the counts they hold."""
        ints = np.asarray(ints, dtype=np.int64).ravel()
        if ints.size < HELLO_FIXED:
            raise ValueError(f"hello of {ints.size} int32 values, at least {HELLO_FIXED} expected")
        n_vars, n_state = int(ints[10]), int(ints[11])
        if n_vars < 0 or n_state < 0 or ints.size != HELLO_FIXED + 2 * n_vars + 2 * n_state:
            raise ValueError(f"hello of {ints.size} int32 values does not match n_vars={n_vars}, n_state={n_state}")
        reals = np.asarray(reals, dtype=np.float64).ravel()
        if reals.size != HELLO_REALS:
            raise ValueError(f"hello of {reals.size} float64 values, {HELLO_REALS} expected")
        lists, at = [], HELLO_FIXED
        for n in (n_vars, n_vars, n_state, n_state):
            lists.append(tuple(int(c) for c in ints[at:at + n]))
            at += n
        h = [int(v) for v in ints[:HELLO_FIXED]]
        return cls(magic=h[0], version=h[1], ny=h[2], nx=h[3], j0=h[4], j1=h[5], i0=h[6], i1=h[7], first_slot=h[8],
                   n_slots=h[9], n_extras=h[12], total_slots=h[13], n_steps=h[14], first_step=h[15],
                   variables=lists[0], units=lists[1], state=lists[2], state_units=lists[3], dx=float(reals[0]),
                   reserved=tuple(float(r) for r in reals[1:]))

    @staticmethod
    def int_length(n_vars: int, n_state: int) -> int:
        """Length of the int32 buffer of a hello with these counts."""
        return HELLO_FIXED + 2 * n_vars + 2 * n_state


@dataclass(frozen=True)
class Reply:
    """The ML partner's answer to a hello (doc §4); a refusal's text follows as TAG_TEXT."""

    status: int
    n_steps: int
    restart_interval: int = 0
    perturbs: bool = False
    writer: int = 0
    text_length: int = 0
    exchange: tuple[int, ...] = ()              # variable codes exchanged every step, in exchange order
    version: int = VERSION

    def encode(self) -> np.ndarray:
        """The TAG_REPLY int32 buffer."""
        return np.array([self.status, self.version, self.n_steps, self.restart_interval, int(self.perturbs),
                         self.writer, self.text_length, len(self.exchange), *self.exchange], dtype=np.int32)

    @classmethod
    def decode(cls, ints: np.ndarray) -> "Reply":
        """A reply from its buffer (possibly longer than needed: a receive buffer of the largest size)."""
        r = [int(v) for v in np.asarray(ints).ravel()]
        n = r[7]
        return cls(status=r[0], version=r[1], n_steps=r[2], restart_interval=r[3], perturbs=bool(r[4]),
                   writer=r[5], text_length=r[6], exchange=tuple(r[REPLY_FIXED:REPLY_FIXED + n]))


def header(kind: int, step: int) -> np.ndarray:
    """A TAG_HEADER buffer [kind, step]."""
    return np.array([kind, step], dtype=np.int32)


def codes_of(names, what: str) -> tuple[int, ...]:
    """Variable codes of `names`; ValueError naming the first one this protocol version has no code for."""
    out = []
    for n in names:
        if n not in VARIABLE_CODES:
            raise ValueError(f"{what} '{n}' has no code in the coupling protocol (coupling.protocol.VARIABLE_CODES: "
                             f"{', '.join(VARIABLE_CODES)})")
        out.append(VARIABLE_CODES[n])
    return tuple(out)
