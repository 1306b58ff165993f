"""Pure-Python twin of the "aes" text hash in ``_native/texthash.h`` (the spec, run slowly).

The C accelerators key every long string of a message by a fast 64-bit hash of its bytes; on a CPU
with AES instructions that hash is the AES-based one described in ``texthash.h`` (16 lanes of 128
bits, one AES round per 16 input bytes, a fold of the lanes, three rounds of finalization). This
module computes exactly the same function with a table-based AES round, so the tests can hold the
VAES and AES-NI paths of the C code to the written algorithm at every size and alignment. It is far
too slow for real keys (a few microseconds per 16 bytes): it is only for tests and small inputs.
On a CPU without AES the C code uses xxh3 instead (``hashing.TEXT_HASH`` says which), and the pure
path of cachescope keys strings with xxh3 as before: the keys never leave the process.
"""

from __future__ import annotations

__all__ = ["aes_text_hash_py"]

LANES = 16
BLOCK = 16 * LANES
_MASK64 = (1 << 64) - 1

# K[0..15] (initial lanes) then F[0..2] (finalization keys), as (low64, high64): texthash.h's table.
_KEY_HALVES = (
    (0x66000FA4AFDE3EA7, 0xE7C5350372EBC218),
    (0xA1EBFC3B203F6A2C, 0xCEB43EBCA5B85E41),
    (0xA04221FB67709A43, 0x9041ADC9712F0CEA),
    (0x9B20B76089B8BF59, 0x0EE9B919CFD97626),
    (0x5BD9C613CBFEBB7E, 0x0E03396BD85C88C0),
    (0xCA3A95DD24502FC0, 0x223B2103A0FA3E8C),
    (0x3002A0E738D93D17, 0x582F22760BA7EEA4),
    (0xAE65E6B97928BD65, 0x2DD48791A9B52F87),
    (0x25F388A597D1A886, 0xE1DAFF3A5231D7C3),
    (0xD6DDB910C8867023, 0x20A37407BE98EDFB),
    (0xBDE258B78AD6E0A4, 0xCCC9C1C3DFC45976),
    (0x76A8B7E50DAEB152, 0x3134D944101FB8A1),
    (0x8AEFFD7668A88F86, 0xBA73F0E648FD22CB),
    (0x9C78776824011B1B, 0x1FB33F249E22AC34),
    (0x273342D5305C853F, 0x99B32B3C5725D806),
    (0x1F225C3029368D29, 0xD053FBFD733558E7),
    (0xB7699D8ECAC8C860, 0x87DE64E00DDA22C6),
    (0xD50E289FAA43B096, 0xF54DC7B745876388),
    (0xAE7D89770F60E931, 0x5EC2670711707517),
)
_KEYS = tuple(low | high << 64 for low, high in _KEY_HALVES)


def _gf_multiply(a: int, b: int) -> int:
    """Product in AES's field GF(2^8) modulo x^8 + x^4 + x^3 + x + 1."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return product


def _sbox() -> list[int]:
    """AES's S-box: the field inverse (0 for 0) followed by the affine map."""
    table = []
    for value in range(256):
        inverse = 0
        if value:
            inverse = next(c for c in range(1, 256) if _gf_multiply(value, c) == 1)
        byte = inverse
        for shift in range(1, 5):
            byte ^= ((inverse << shift) | (inverse >> (8 - shift))) & 0xFF
        table.append(byte ^ 0x63)
    return table


def _round_tables() -> tuple[list[int], list[int], list[int], list[int]]:
    """T-tables: SubBytes and MixColumns of one byte in row r, as a little-endian column word."""
    sbox = _sbox()
    first = []
    for value in range(256):
        s = sbox[value]
        first.append(_gf_multiply(s, 2) | s << 8 | s << 16 | _gf_multiply(s, 3) << 24)
    rotated = [
        [((w << (8 * r)) | (w >> (32 - 8 * r))) & 0xFFFFFFFF for w in first] for r in (1, 2, 3)
    ]
    return first, rotated[0], rotated[1], rotated[2]


_T0, _T1, _T2, _T3 = _round_tables()


def _aesenc(state: int, key: int) -> int:
    """x86 AESENC on 128-bit integers (byte i of memory is bits 8i..8i+7): one AES round."""
    b = state.to_bytes(16, "little")
    # ShiftRows moves row r left by r columns: output column c takes row r from column c + r.
    result = 0
    for column in range(4):
        word = (
            _T0[b[4 * column]]
            ^ _T1[b[1 + 4 * ((column + 1) % 4)]]
            ^ _T2[b[2 + 4 * ((column + 2) % 4)]]
            ^ _T3[b[3 + 4 * ((column + 3) % 4)]]
        )
        result |= word << (32 * column)
    return result ^ key


def _chunk(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 16], "little")


def aes_text_hash_py(data: bytes) -> int:
    """The "aes" text hash of ``data`` (texthash.h's algorithm), as an unsigned 64-bit int."""
    data = bytes(data)
    n = len(data)
    length = n  # L: the 128-bit value with n in its low 64 bits
    lanes = [key ^ length for key in _KEYS[:LANES]]
    if n <= 16:
        lanes[0] = _aesenc(lanes[0], int.from_bytes(data.ljust(16, b"\0"), "little"))
        chunks = 1
    elif n < BLOCK:
        chunks = (n + 15) // 16
        for c in range(chunks):
            lanes[c] = _aesenc(lanes[c], _chunk(data, min(16 * c, n - 16)))
    else:
        chunks = LANES
        offsets = [*range(0, n - BLOCK, BLOCK), n - BLOCK]
        for offset in offsets:
            for lane in range(LANES):
                lanes[lane] = _aesenc(lanes[lane], _chunk(data, offset + 16 * lane))
    width = 1
    while width < chunks:
        width *= 2
    for lane in range(width):
        lanes[lane] = _aesenc(_aesenc(lanes[lane], _KEYS[lane]), _KEYS[lane])
    while width > 1:
        width //= 2
        for lane in range(width):
            lanes[lane] = _aesenc(lanes[lane], lanes[lane + width])
    h = _aesenc(lanes[0], _KEYS[LANES] ^ length)
    h = _aesenc(h, _KEYS[LANES + 1])
    h = _aesenc(h, _KEYS[LANES + 2])
    return (h ^ (h >> 64)) & _MASK64
