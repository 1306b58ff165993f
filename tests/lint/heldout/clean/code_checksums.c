/* checksums.c: CRC-32, CRC-32C, Adler-32, FNV-1a and a small xorshift generator for the
 * storage engine's page format. Every function here is pure and allocation-free.
 *
 * Page layout (format version 3, see docs/page-format.md, section 4.2):
 *
 *   offset  size  field
 *   0       4     magic, 0x50474533 ("PGE3" in ASCII, little-endian)
 *   4       2     format version (3)
 *   6       2     flags
 *   8       8     page number
 *   16      4     payload length in bytes (at most 65,504)
 *   20      4     CRC-32C of bytes 24..(24 + payload length)
 *   24      ...   payload
 *
 * The page size is 64 KiB (65,536 bytes); the header takes 24 bytes and the trailer 8, which
 * leaves 65,504 bytes of payload.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "checksums.h"

#define PAGE_MAGIC 0x50474533u
#define PAGE_FORMAT_VERSION 3
#define PAGE_SIZE 65536u
#define PAGE_HEADER_SIZE 24u
#define PAGE_TRAILER_SIZE 8u
#define PAGE_MAX_PAYLOAD (PAGE_SIZE - PAGE_HEADER_SIZE - PAGE_TRAILER_SIZE)

/* Reflected polynomials. */
#define CRC32_POLY 0xEDB88320u  /* IEEE 802.3, reversed form of 0x04C11DB7 */
#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reversed form of 0x1EDC6F41 */

#define ADLER_MOD 65521u /* the largest prime below 2^16 */
#define ADLER_NMAX 5552  /* the most bytes before the sums can overflow 32 bits */

#define FNV32_OFFSET 0x811C9DC5u
#define FNV32_PRIME 0x01000193u
#define FNV64_OFFSET 0xCBF29CE484222325ull
#define FNV64_PRIME 0x00000100000001B3ull

static uint32_t crc32_table[8][256];
static uint32_t crc32c_table[8][256];
static int tables_ready = 0;

static void
build_table(uint32_t table[8][256], uint32_t poly)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (poly ^ (c >> 1)) : (c >> 1);
        table[0][n] = c;
    }
    /* slicing-by-8: table[k][n] is the CRC of byte n followed by k zero bytes */
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xFFu] ^ (c >> 8);
            table[k][n] = c;
        }
    }
}

void
checksums_init(void)
{
    if (tables_ready)
        return;
    build_table(crc32_table, CRC32_POLY);
    build_table(crc32c_table, CRC32C_POLY);
    tables_ready = 1;
}

static uint32_t
crc_sliced(uint32_t table[8][256], uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
              table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
              table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* CRC-32 (IEEE). Check value: crc32("123456789") == 0xCBF43926. */
uint32_t
checksums_crc32(uint32_t crc, const void *data, size_t size)
{
    checksums_init();
    return crc_sliced(crc32_table, crc, (const uint8_t *)data, size);
}

/* CRC-32C (Castagnoli). Check value: crc32c("123456789") == 0xE3069283. */
uint32_t
checksums_crc32c(uint32_t crc, const void *data, size_t size)
{
    checksums_init();
    return crc_sliced(crc32c_table, crc, (const uint8_t *)data, size);
}

/* Adler-32 as in RFC 1950. Check value: adler32("Wikipedia") == 0x11E60398. */
uint32_t
checksums_adler32(uint32_t adler, const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    uint32_t a = adler & 0xFFFFu;
    uint32_t b = adler >> 16;
    while (size > 0) {
        size_t chunk = size < ADLER_NMAX ? size : ADLER_NMAX;
        size -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= ADLER_MOD;
        b %= ADLER_MOD;
    }
    return (b << 16) | a;
}

/* FNV-1a, 32 and 64 bits. fnv1a32("") == 0x811C9DC5, fnv1a32("a") == 0xE40C292C. */
uint32_t
checksums_fnv1a32(const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    uint32_t h = FNV32_OFFSET;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= FNV32_PRIME;
    }
    return h;
}

uint64_t
checksums_fnv1a64(const void *data, size_t size)
{
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = FNV64_OFFSET;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

/* A 64-bit mix from SplitMix64, used to spread page numbers over the buffer pool's buckets. */
uint64_t
checksums_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* xorshift64* for the test harness and for eviction sampling. Never seeded from the clock: the
 * caller passes a seed so that runs can be repeated. A zero state is replaced by a fixed odd
 * constant, since xorshift never leaves zero. */
uint64_t
checksums_xorshift64s(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x2545F4914F6CDD1Dull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Page helpers. */

static uint32_t
load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void
store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)((v >> 8) & 0xFF);
    p[2] = (uint8_t)((v >> 16) & 0xFF);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t
load_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

int
page_check(const uint8_t *page, size_t size, char *why, size_t why_size)
{
    if (size != PAGE_SIZE) {
        snprintf(why, why_size, "page is %zu bytes, expected %u", size, PAGE_SIZE);
        return -1;
    }
    uint32_t magic = load_u32le(page);
    if (magic != PAGE_MAGIC) {
        snprintf(why, why_size, "bad magic 0x%08X (expected 0x%08X)", magic, PAGE_MAGIC);
        return -1;
    }
    uint16_t version = load_u16le(page + 4);
    if (version != PAGE_FORMAT_VERSION) {
        snprintf(why, why_size, "format version %u is not supported (this build reads %d)",
                 version, PAGE_FORMAT_VERSION);
        return -1;
    }
    uint32_t length = load_u32le(page + 16);
    if (length > PAGE_MAX_PAYLOAD) {
        snprintf(why, why_size, "payload length %u exceeds %u", length, PAGE_MAX_PAYLOAD);
        return -1;
    }
    uint32_t stored = load_u32le(page + 20);
    uint32_t actual = checksums_crc32c(0, page + PAGE_HEADER_SIZE, length);
    if (stored != actual) {
        snprintf(why, why_size, "checksum 0x%08X does not match 0x%08X", actual, stored);
        return -1;
    }
    return 0;
}

void
page_seal(uint8_t *page, uint64_t number, uint16_t flags, uint32_t length)
{
    store_u32le(page, PAGE_MAGIC);
    page[4] = PAGE_FORMAT_VERSION & 0xFF;
    page[5] = 0;
    page[6] = (uint8_t)(flags & 0xFF);
    page[7] = (uint8_t)(flags >> 8);
    for (int i = 0; i < 8; i++)
        page[8 + i] = (uint8_t)(number >> (8 * i));
    store_u32le(page + 16, length);
    store_u32le(page + 20, checksums_crc32c(0, page + PAGE_HEADER_SIZE, length));
}

/* Self-test with the standard check values; returns the number of failures. Run at start-up in
 * debug builds and by `make check`. */
int
checksums_selftest(void)
{
    static const char digits[] = "123456789";
    int failures = 0;
    if (checksums_crc32(0, digits, 9) != 0xCBF43926u)
        failures++;
    if (checksums_crc32c(0, digits, 9) != 0xE3069283u)
        failures++;
    if (checksums_adler32(1, "Wikipedia", 9) != 0x11E60398u)
        failures++;
    if (checksums_fnv1a32("", 0) != 0x811C9DC5u)
        failures++;
    if (checksums_fnv1a32("a", 1) != 0xE40C292Cu)
        failures++;
    if (checksums_fnv1a64("", 0) != 0xCBF29CE484222325ull)
        failures++;
    if (checksums_fnv1a64("a", 1) != 0xAF63DC4C8601EC8Cull)
        failures++;
    uint64_t state = 1;
    uint64_t first = checksums_xorshift64s(&state);
    uint64_t again = 1;
    if (checksums_xorshift64s(&again) != first)
        failures++;
    return failures;
}

/* Bit tricks used by the free-space map. */

static inline unsigned
popcount32(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}

static inline uint32_t
next_power_of_two(uint32_t v)
{
    if (v <= 1)
        return 1;
    v--;
    v |= v >> 1;
    v |= v >> 2;
    v |= v >> 4;
    v |= v >> 8;
    v |= v >> 16;
    return v + 1;
}

unsigned
free_slots(const uint32_t *bitmap, size_t words)
{
    unsigned total = 0;
    for (size_t i = 0; i < words; i++)
        total += 32 - popcount32(bitmap[i]);
    return total;
}

uint32_t
round_extent(uint32_t bytes)
{
    /* extents are 4096, 8192, 16384 ... 1048576 bytes */
    uint32_t size = next_power_of_two(bytes);
    if (size < 4096u)
        size = 4096u;
    if (size > 1048576u)
        size = 1048576u;
    return size;
}
