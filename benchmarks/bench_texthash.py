"""Text hash (texthash.h, "aes" with VAES/AES-NI) vs xxh3, timed in C, on message-sized strings.

`cachescope.compare` keys every message by a 64-bit hash of each of its long strings; this measures
that hash against xxh3 as the modules compile it (`XXH3_64bits`, SSE2), against xxh3 with its AVX2
kernel (what `blocks.c` hashed long strings with before: the fair peer), and against a plain read of the same bytes (the memory-speed ceiling). Every pass runs in C (`hashing._bench`) over a list
of random buffers, so Python's call overhead is out of the figures. Sizes: 64 B .. 1 MB, each hashed
from buffers that stay in L1/L2, plus the case that matters: 490 distinct 1.8 KB buffers (the long
strings of one ~1 MB request side) and 980 (both sides, streamed from L3). The functions alternate
within each repetition, so load hits all alike; each figure is the best of the repetitions. With
`CACHESCOPE_TEXT_HASH_PATH=aesni` the AES-NI path runs instead of VAES.

Run: `.venv/bin/python -m benchmarks.bench_texthash`
"""

from __future__ import annotations

import os
import platform
import random

from benchmarks._machine import cpu_model
from cachescope import _native

REPEATS = 7
# Bytes hashed per timed pass: large enough for the clock, small enough for the caches' story.
PASS_BYTES = 4_000_000

# (label, buffer size, number of distinct buffers)
CASES = [
    ("64 B", 64, 256),
    ("256 B", 256, 256),
    ("1 KB", 1024, 64),
    ("2 KB", 2048, 32),
    ("16 KB", 16384, 4),
    ("1 MB", 1 << 20, 1),
    ("490 x 1.8 KB (one side)", 1800, 490),
    ("980 x 1.8 KB (both sides)", 1800, 980),
]
FUNCTIONS = ("text_hash", "xxh3", "xxh3_avx2", "read")


def main() -> None:
    hashing = _native.load("hashing")
    if hashing is None:
        raise SystemExit("the hashing accelerator is not built (or CACHESCOPE_PURE is set)")
    path = hashing._text_hash_path(os.environ.get("CACHESCOPE_TEXT_HASH_PATH", "auto"))
    rng = random.Random(1)
    load_before = os.getloadavg()
    rows = []
    for label, size, count in CASES:
        buffers = [rng.randbytes(size) for _ in range(count)]
        rounds = max(1, PASS_BYTES // (size * count))
        best = dict.fromkeys(FUNCTIONS, float("inf"))
        for _ in range(REPEATS):
            for name in FUNCTIONS:
                best[name] = min(best[name], hashing._bench(name, buffers, rounds))
        total = size * count * rounds
        rows.append((label, {name: total / seconds / 1e9 for name, seconds in best.items()}))
    load_after = os.getloadavg()
    hashing._text_hash_path("auto")

    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"text hash: {hashing.TEXT_HASH} ({path} path); best of {REPEATS}, GB/s")
    print(
        f"{'case':<28}{'text_hash':>10}{'xxh3':>8}{'avx2':>8}{'read':>8}"
        f"{'vs xxh3':>9}{'vs avx2':>9}{'vs read':>9}"
    )
    for label, speed in rows:
        print(
            f"{label:<28}{speed['text_hash']:>10.1f}{speed['xxh3']:>8.1f}"
            f"{speed['xxh3_avx2']:>8.1f}{speed['read']:>8.1f}"
            f"{speed['text_hash'] / speed['xxh3']:>8.2f}x"
            f"{speed['text_hash'] / speed['xxh3_avx2']:>8.2f}x"
            f"{speed['text_hash'] / speed['read']:>8.2f}x"
        )


if __name__ == "__main__":
    main()
