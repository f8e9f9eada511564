"""The SHA-256 of a file, the one way lossweep identifies weight files (torch-free: ``study`` imports it).

A checkpoint's digest is part of the embedding cache key (``runners.features``) and of the study record
(``study.config.StudyConfig.to_dict``); both must compute it the same way, so there is one function.
"""

from __future__ import annotations

import hashlib
import os

_BLOCK = 1 << 20  # read 1 MiB at a time: checkpoints are large


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
