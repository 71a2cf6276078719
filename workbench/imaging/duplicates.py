"""Near-duplicate photos: a perceptual hash, and an index that finds a photo's copy.

A resized, re-encoded or re-compressed copy of a photo has other bytes (so another
sha256) but the same picture. Its **perceptual hash** (imagehash's DCT hash at 16 × 16
= 256 bits: the signs of the lowest frequencies of the 64 × 64 grey image against
their median) stays within a few bits: at most 8 of 256 for JPEG q60–q80 and ½–3×
resizes of LFW photos, while different LFW photos — all centred portraits, the
hardest case — differ in at least 66 (measured on 1,500 of them, 1.1M pairs).
`MAX_DISTANCE` (15 bits) sits between.

Copies are looked for within a source (`workbench.ingest.pipeline`): a source is a
collection searches and the gallery are narrowed to, so the same picture in two
sources stays a photo of each.

`DuplicateIndex` finds a hash's nearest stored one within `MAX_DISTANCE` without
comparing against every photo: split into 16 chunks of 16 bits, two hashes at most
15 bits apart agree exactly on at least one chunk (pigeonhole), so only the photos
sharing a chunk with the query are compared.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from numpy.typing import NDArray

from workbench._optional import require

HASH_SIZE = 16
"""imagehash's ``hash_size``: 16 × 16 = 256 bits, 64 hex digits."""
MAX_DISTANCE = 15
"""Hashes at most this many bits apart are the same picture (copies: ≤ 8; others: ≥ 66)."""
CHUNKS = 16


def perceptual_hash(rgb: NDArray[np.uint8]) -> str:
    """The 256-bit DCT perceptual hash of an RGB image, as 64 hex digits."""
    imagehash = require("imagehash", None, "near-duplicate photos")
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(rgb), hash_size=HASH_SIZE))


def _bits(hex_hash: str) -> NDArray[np.uint8]:
    return np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8)


def hamming(a: str, b: str) -> int:
    """Bits in which two hashes differ."""
    return int(np.unpackbits(_bits(a) ^ _bits(b)).sum())


class DuplicateIndex:
    """Photo ids by perceptual hash; `find` gives the photo a hash is a copy of."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._hashes: list[NDArray[np.uint8]] = []
        self._chunks: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(CHUNKS)]

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, photo_id: int, hex_hash: str) -> None:
        bits = _bits(hex_hash)
        if len(bits) != HASH_SIZE * HASH_SIZE // 8:
            return  # a hash of another size (another version): never matched
        row = len(self._ids)
        self._ids.append(int(photo_id))
        self._hashes.append(bits)
        for k, part in enumerate(self._parts(bits)):
            self._chunks[k][part].append(row)

    def find(self, hex_hash: str) -> int | None:
        """The nearest photo within `MAX_DISTANCE` bits (the oldest on a tie), or None."""
        bits = _bits(hex_hash)
        if len(bits) != HASH_SIZE * HASH_SIZE // 8 or not self._ids:
            return None
        rows = sorted(
            {r for k, part in enumerate(self._parts(bits)) for r in self._chunks[k][part]}
        )
        if not rows:
            return None
        stored = np.stack([self._hashes[r] for r in rows])
        dist = np.unpackbits(stored ^ bits, axis=1).sum(axis=1)
        best = int(dist.min())
        if best > MAX_DISTANCE:
            return None
        return min(self._ids[r] for r, d in zip(rows, dist, strict=True) if d == best)

    @staticmethod
    def _parts(bits: NDArray[np.uint8]) -> list[bytes]:
        step = len(bits) // CHUNKS
        return [bits[i * step : (i + 1) * step].tobytes() for i in range(CHUNKS)]


__all__ = ["HASH_SIZE", "MAX_DISTANCE", "DuplicateIndex", "hamming", "perceptual_hash"]
