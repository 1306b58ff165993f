"""The text hash of long strings (texthash.h): the written algorithm, both C paths, and its quality.

On a CPU with AES the C hash is the "aes" algorithm, held here to its pure-Python statement
(`cachescope._texthash`) at every size and alignment; the VAES path to the AES-NI path; and, whatever
the algorithm in use, the C hash to the quality a key of a message needs: no collision among
~200k inputs of the shapes messages have, full avalanche, every byte and the length counted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest
import xxhash

import cachescope._native as native
from cachescope._texthash import _aesenc, aes_text_hash_py

SEED = 20261204


def hashing_module() -> ModuleType:
    module = native.load("hashing")
    if module is None:
        pytest.skip("no compiled accelerators")
    return module


def aes_module() -> ModuleType:
    module = hashing_module()
    if module.TEXT_HASH != "aes":
        pytest.skip(f"this CPU has no AES instructions: the text hash is {module.TEXT_HASH}")
    return module


@contextmanager
def forced_path(module: ModuleType, name: str) -> Iterator[None]:
    assert module._text_hash_path(name) == name
    try:
        yield
    finally:
        module._text_hash_path("auto")


def test_the_reference_aes_round_is_intel_aesenc() -> None:
    # The AESENC example of Intel's AES-NI white paper (Gueron, 2010), state and round key.
    state = 0x7B5B54657374566563746F725D53475D
    key = 0x48692853686179295B477565726F6E5D
    assert _aesenc(state, key) == 0xA8311C2F9FDBA3C58B104B58DED7E595


def test_the_reference_tells_apart_lengths_tails_and_zero_padding() -> None:
    # Pure-Python run of the spec itself (the C-vs-reference tests below need an AES CPU).
    data = bytes(range(256)) * 3
    hashes = {aes_text_hash_py(data[:n]) for n in range(0, 600, 7)}
    assert len(hashes) == len(range(0, 600, 7))
    assert aes_text_hash_py(b"") != aes_text_hash_py(b"\0")
    assert aes_text_hash_py(b"abc") != aes_text_hash_py(b"abc\0")
    assert aes_text_hash_py(data[:300]) != aes_text_hash_py(data[:299] + b"\xff")
    assert all(0 <= h < 2**64 for h in hashes)


def test_text_hash_takes_bytes_like_objects_only() -> None:
    module = hashing_module()
    assert module.TEXT_HASH in ("aes", "xxh3")
    data = b"x" + bytes(range(200))
    assert module.text_hash(bytearray(data[1:])) == module.text_hash(memoryview(data)[1:])
    for wrong in ("text", 3, None):
        with pytest.raises(TypeError, match="expected a bytes-like object"):
            module.text_hash(wrong)


def test_text_hash_refuses_odd_input_without_crashing() -> None:
    module = hashing_module()
    with pytest.raises(BufferError):
        module.text_hash(memoryview(bytes(64))[::2])  # not contiguous
    with pytest.raises(ValueError, match="unknown text hash path"):
        module._text_hash_path("sse")
    with pytest.raises(TypeError, match="buffers must be bytes"):
        module._bench("text_hash", [b"x", "y"], 1)
    with pytest.raises(ValueError, match="unknown function"):
        module._bench("md5", [b"x"], 1)
    assert module._text_hash_path() == module._text_hash_path("auto")


def test_text_hash_is_xxh3_without_aes() -> None:
    module = hashing_module()
    if module.TEXT_HASH != "xxh3":
        pytest.skip("this CPU has AES: see the reference tests")
    for n in range(300):
        data = bytes(range(n % 256)) * (n // 256 + 1)
        assert module.text_hash(data) == xxhash.xxh3_64_intdigest(data)


def test_c_equals_the_reference_for_every_size_to_300_at_several_offsets() -> None:
    module = aes_module()
    big = random.Random(SEED).randbytes(400)
    for offset in (0, 1, 7, 15, 33):
        for n in range(301):
            data = big[offset : offset + n]
            assert module.text_hash(data) == aes_text_hash_py(data), (n, offset)


def test_c_equals_the_reference_for_random_sizes_to_5000() -> None:
    module = aes_module()
    rng = random.Random(SEED + 1)
    big = rng.randbytes(5100)
    sizes = [255, 256, 257, 511, 512, 513, 4096, 5000] + [
        rng.randrange(301, 5001) for _ in range(24)
    ]
    for n in sizes:
        offset = rng.randrange(0, 100)
        data = big[offset : offset + n]
        assert module.text_hash(data) == aes_text_hash_py(data), (n, offset)


def test_the_aes_ni_path_gives_the_vaes_results() -> None:
    module = aes_module()
    if module._text_hash_path() != "vaes":
        pytest.skip("this CPU has AES-NI but not VAES: one path only")
    rng = random.Random(SEED + 2)
    big = rng.randbytes(70_000)
    cases = [(rng.randrange(0, 64), n) for n in range(3000)]
    cases += [(rng.randrange(0, 64), rng.randrange(3000, 69_000)) for _ in range(200)]
    views = [memoryview(big)[offset : offset + n] for offset, n in cases]
    vaes = [module.text_hash(view) for view in views]
    with forced_path(module, "aesni"):
        aesni = [module.text_hash(view) for view in views]
    assert aesni == vaes
    assert module._text_hash_path() == "vaes"


def test_no_collision_among_200k_inputs_shaped_like_messages() -> None:
    text_hash = hashing_module().text_hash
    rng = random.Random(SEED + 3)
    hashes: list[int] = []

    # 70k random inputs of 17..2000 bytes (slices of one random buffer: distinct inputs).
    pool = memoryview(rng.randbytes(200_000))
    slices: set[tuple[int, int]] = set()
    while len(slices) < 70_000:
        n = rng.randrange(17, 2001)
        slices.add((rng.randrange(0, len(pool) - n), n))
    hashes += [text_hash(pool[start : start + n]) for start, n in slices]

    # Sparse flips: every single bit and 20k random bit pairs of a 1 KB input; every single bit
    # and every pair of bits of a 40-byte input.
    for size, pairs in ((1024, 20_000), (40, None)):
        base = rng.randbytes(size)
        bits = 8 * size
        flips: list[tuple[int, ...]] = [(bit,) for bit in range(bits)]
        if pairs is None:
            flips += [(a, b) for a in range(bits) for b in range(a + 1, bits)]
        else:
            flips += [tuple(rng.sample(range(bits), 2)) for _ in range(pairs)]
            flips = list(dict.fromkeys(tuple(sorted(f)) for f in flips))
        hashes.append(text_hash(base))
        for flip in flips:
            data = bytearray(base)
            for bit in flip:
                data[bit // 8] ^= 1 << (bit % 8)
            hashes.append(text_hash(data))

    # The same prefix at 50k different lengths, and all-zero inputs of lengths 0..4096.
    prefix = memoryview(rng.randbytes(50_001))
    hashes += [text_hash(prefix[:n]) for n in range(1, 50_001)]
    zeros = bytes(4096)
    hashes += [text_hash(zeros[:n]) for n in range(4097)]

    assert len(hashes) > 200_000
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize("size", [33, 100, 1000])
def test_flipping_any_input_bit_flips_half_the_output_bits(size: int) -> None:
    text_hash = hashing_module().text_hash
    base = random.Random(SEED + size).randbytes(size)
    reference = text_hash(base)
    changed: list[int] = []
    for bit in range(8 * size):
        data = bytearray(base)
        data[bit // 8] ^= 1 << (bit % 8)
        changed.append((text_hash(data) ^ reference).bit_count())
    assert min(changed) > 0
    assert 24 <= sum(changed) / len(changed) <= 40


def test_every_byte_and_the_length_count_at_every_size() -> None:
    text_hash = hashing_module().text_hash
    data = random.Random(SEED + 4).randbytes(1300)
    for n in range(1, 1300):
        text = data[:n]
        first = bytes([text[0] ^ 1]) + text[1:]
        last = text[:-1] + bytes([text[-1] ^ 0x80])
        hashes = {text_hash(text), text_hash(first), text_hash(last), text_hash(text + b"\0")}
        assert len(hashes) == 4, n
