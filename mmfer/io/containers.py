"""Why an MP4/MOV that FFmpeg cannot open is broken, in words a user can act on.

FFmpeg reports every such file as "invalid data". The commonest real cause is a recording that
was never finalised (the camera or phone stopped before writing the index, the ``moov`` box),
or a download cut short; the top-level boxes say which, without decoding anything.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_INDEX = (b"moov", b"moof")  # a plain index, or a fragmented file's first fragment


def mp4_damage(path: str | Path) -> str | None:
    """What is wrong with an ISO-BMFF file (MP4, MOV, M4A, 3GP) whose boxes do not add up, or None when
    it is not one (no leading ``ftyp`` box) or its top level looks whole."""
    with open(path, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return None
        pos, seen, cut = 0, set(), None
        while pos + 8 <= total:
            f.seek(pos)
            h = f.read(16)
            size, kind = struct.unpack(">I4s", h[:8])
            if size == 1 and len(h) == 16:
                size = struct.unpack(">Q", h[8:16])[0]
            elif size == 0:
                size = total - pos
            if size < 8:
                return f"corrupt MP4/MOV (a box with an impossible size at byte {pos:,})"
            seen.add(kind)
            if pos + size > total:
                cut = kind.decode("latin-1")
                break
            pos += size
    if not seen.intersection(_INDEX):
        where = f"; the file also ends inside its {cut!r} box" if cut else ""
        return ("unplayable MP4/MOV: its index (the 'moov' box) is missing, as when a recording is never finalised "
                f"or a download stops early{where}")
    if cut:
        return f"truncated MP4/MOV: the file ends inside its {cut!r} box"
    return None
