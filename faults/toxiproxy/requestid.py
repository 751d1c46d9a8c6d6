"""Request ids in the format of ``github.com/rs/xid`` (what Toxiproxy's logger uses).

12 bytes — 4 of Unix time, 3 of machine id, 2 of pid, 3 of counter — as 20
lower-case base32hex characters.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import socket
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
_MACHINE = hashlib.md5(socket.gethostname().encode()).digest()[:3]
_PID = os.getpid() & 0xFFFF
_COUNTER = itertools.count(random.SystemRandom().randrange(1 << 24))


def new_request_id() -> str:
    raw = (
        int(time.time()).to_bytes(4, "big")
        + _MACHINE
        + _PID.to_bytes(2, "big")
        + (next(_COUNTER) & 0xFFFFFF).to_bytes(3, "big")
    )
    value = int.from_bytes(raw, "big") << 4  # 96 bits -> 100 bits, 20 chars of 5 bits
    return "".join(_ALPHABET[(value >> (5 * (19 - i))) & 0x1F] for i in range(20))
