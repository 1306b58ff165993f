/* cachescope text hash: a fast 64-bit hash of long strings (message keys), AES-based.
 *
 * For NON-ADVERSARIAL content only, like xxh3: it is fast because every 16 bytes of input go
 * through a single AES round, which is enough to tell apart the strings one finds in requests
 * but not to resist someone crafting collisions. The keys it makes live in one process (they key
 * a memo and compare two requests of the same process); they are never stored, so the hash may
 * differ between machines: cs_text_hash_init() says which one is in use ("aes" or "xxh3").
 *
 * Include after xxhash.h (with XXH_INLINE_ALL). Everything here is static.
 *
 * The algorithm ("aes"), over 16 lanes s[0..15] of 128 bits (little-endian byte order, as a
 * 16-byte load gives them), with aesenc(s, k) = MixColumns(ShiftRows(SubBytes(s))) ^ k, the
 * x86 AESENC instruction; n = size, L = the 128-bit value whose low 64 bits are n, high 0:
 *
 *   1. s[i] = K[i] ^ L                                  (a length-dependent initial state)
 *   2. absorb: every 16-byte chunk d is absorbed into a lane as s = aesenc(s, d)
 *      - n <= 16:       one chunk, the input padded with zeros to 16 bytes, into lane 0;
 *      - 16 < n < 256:  k = ceil(n / 16) chunks; chunk c (read at min(16c, n - 16), so the last
 *                       one overlaps its neighbour instead of reading past the end) into lane c;
 *      - n >= 256:      256-byte blocks at 0, 256, ... while the block ends before n, then one
 *                       last block at n - 256 (overlapping); chunk c of a block into lane c.
 *   3. m = 16 for n > 240, else the smallest power of two >= k (k = 1 for n <= 16); two more
 *      rounds on each of the first m lanes: s[i] = aesenc(aesenc(s[i], K[i]), K[i]) for i < m;
 *      then fold them: while m > 1: m /= 2; s[i] = aesenc(s[i], s[i + m]) for i < m.
 *      (Without the two rounds, a one-bit change in lane 0 of the last block and one in lane 8 of
 *      the block before meet in the fold after one round each and cancel with probability about
 *      2^-7: 130 collisions among 28k sparse bit flips of a 1 KB input. With them two changes
 *      in different lanes meet after at least two rounds on one side and three on the other, or
 *      three on both: far too many active S-boxes for a chance cancellation.)
 *   4. h = aesenc(s[0], F[0] ^ L); h = aesenc(h, F[1]); h = aesenc(h, F[2]);
 *      result = low64(h) ^ high64(h). Every input byte goes through at least five rounds after
 *      it went in (two in step 3, three here).
 *
 * The VAES path holds lanes 2j and 2j+1 in one 256-bit register: 16 lanes are 8 independent
 * aesenc chains (enough to cover the instruction's latency), and the fold pairs lane i with
 * i + m, i.e. register j with register j + m/2, so it gives exactly the AES-NI path's results.
 * The pure-Python twin is cachescope._texthash.aes_text_hash_py.
 */
#ifndef CACHESCOPE_TEXTHASH_H
#define CACHESCOPE_TEXTHASH_H

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CS_TH_X86 1
#include <immintrin.h>
#else
#define CS_TH_X86 0
#endif

#define CS_TH_LANES 16
#define CS_TH_BLOCK (16 * CS_TH_LANES)

/* K[0..15] (initial lanes) then F[0..2] (finalization keys), each as (low64, high64). */
static const unsigned long long cs_th_keys[2 * (CS_TH_LANES + 3)] = {
    0x66000fa4afde3ea7ULL, 0xe7c5350372ebc218ULL, 0xa1ebfc3b203f6a2cULL, 0xceb43ebca5b85e41ULL,
    0xa04221fb67709a43ULL, 0x9041adc9712f0ceaULL, 0x9b20b76089b8bf59ULL, 0x0ee9b919cfd97626ULL,
    0x5bd9c613cbfebb7eULL, 0x0e03396bd85c88c0ULL, 0xca3a95dd24502fc0ULL, 0x223b2103a0fa3e8cULL,
    0x3002a0e738d93d17ULL, 0x582f22760ba7eea4ULL, 0xae65e6b97928bd65ULL, 0x2dd48791a9b52f87ULL,
    0x25f388a597d1a886ULL, 0xe1daff3a5231d7c3ULL, 0xd6ddb910c8867023ULL, 0x20a37407be98edfbULL,
    0xbde258b78ad6e0a4ULL, 0xccc9c1c3dfc45976ULL, 0x76a8b7e50daeb152ULL, 0x3134d944101fb8a1ULL,
    0x8aeffd7668a88f86ULL, 0xba73f0e648fd22cbULL, 0x9c78776824011b1bULL, 0x1fb33f249e22ac34ULL,
    0x273342d5305c853fULL, 0x99b32b3c5725d806ULL, 0x1f225c3029368d29ULL, 0xd053fbfd733558e7ULL,
    0xb7699d8ecac8c860ULL, 0x87de64e00dda22c6ULL, 0xd50e289faa43b096ULL, 0xf54dc7b745876388ULL,
    0xae7d89770f60e931ULL, 0x5ec2670711707517ULL,
};

/* Which implementation cs_text_hash runs: -1 not chosen yet. */
enum { CS_TH_UNSET = -1, CS_TH_XXH3 = 0, CS_TH_AESNI = 1, CS_TH_VAES = 2 };
static int cs_th_path = CS_TH_UNSET;
static int cs_th_best = CS_TH_UNSET;

#if CS_TH_X86

__attribute__((target("aes,sse4.1"))) static inline __m128i cs_th_key(int index)
{
    return _mm_loadu_si128((const __m128i *)(cs_th_keys + 2 * index));
}

/* Steps 3-4 on lanes held as 128-bit values (shared by both paths for short inputs); inlined
 * with a constant m so the loops unroll and the lanes stay in registers. */
__attribute__((target("aes,sse4.1"), always_inline)) static inline unsigned long long
cs_th_finish128(__m128i *s, unsigned m, __m128i len)
{
    unsigned i;
    __m128i h;
    for (i = 0; i < m; i++)
        s[i] = _mm_aesenc_si128(_mm_aesenc_si128(s[i], cs_th_key((int)i)), cs_th_key((int)i));
    while (m > 1) {
        m /= 2;
        for (i = 0; i < m; i++)
            s[i] = _mm_aesenc_si128(s[i], s[i + m]);
    }
    h = _mm_aesenc_si128(s[0], _mm_xor_si128(cs_th_key(CS_TH_LANES), len));
    h = _mm_aesenc_si128(h, cs_th_key(CS_TH_LANES + 1));
    h = _mm_aesenc_si128(h, cs_th_key(CS_TH_LANES + 2));
    h = _mm_xor_si128(h, _mm_unpackhi_epi64(h, h));
    return (unsigned long long)_mm_cvtsi128_si64(h);
}

/* 16 < n <= 16 m (steps 1-4 with at most one chunk per lane) for a constant fold width m. */
__attribute__((target("aes,sse4.1"), always_inline)) static inline unsigned long long
cs_th_short_m(const unsigned char *p, size_t n, const unsigned m)
{
    __m128i s[CS_TH_LANES];
    __m128i len = _mm_cvtsi64_si128((long long)n);
    size_t k = (n + 15) / 16;
    unsigned c;
    for (c = 0; c < m; c++) {
        s[c] = _mm_xor_si128(cs_th_key((int)c), len);
        if (c + 1 < k)
            s[c] = _mm_aesenc_si128(s[c], _mm_loadu_si128((const __m128i *)(p + 16 * c)));
        else if (c + 1 == k)
            s[c] = _mm_aesenc_si128(s[c], _mm_loadu_si128((const __m128i *)(p + n - 16)));
    }
    return cs_th_finish128(s, m, len);
}

/* n < 256, on either path. */
__attribute__((target("aes,sse4.1"), unused)) static unsigned long long
cs_th_short(const unsigned char *p, size_t n)
{
    if (n <= 16) {
        unsigned char pad[16] = {0};
        __m128i len = _mm_cvtsi64_si128((long long)n), s[1];
        if (n)
            memcpy(pad, p, n);
        s[0] = _mm_aesenc_si128(_mm_xor_si128(cs_th_key(0), len),
                                _mm_loadu_si128((const __m128i *)pad));
        return cs_th_finish128(s, 1, len);
    }
    if (n <= 32)
        return cs_th_short_m(p, n, 2);
    if (n <= 64)
        return cs_th_short_m(p, n, 4);
    if (n <= 128)
        return cs_th_short_m(p, n, 8);
    return cs_th_short_m(p, n, 16);
}

#define CS_TH_ABSORB128(q)                                                                         \
    do {                                                                                           \
        const __m128i *b_ = (const __m128i *)(q);                                                  \
        s0 = _mm_aesenc_si128(s0, _mm_loadu_si128(b_ + 0));                                        \
        s1 = _mm_aesenc_si128(s1, _mm_loadu_si128(b_ + 1));                                        \
        s2 = _mm_aesenc_si128(s2, _mm_loadu_si128(b_ + 2));                                        \
        s3 = _mm_aesenc_si128(s3, _mm_loadu_si128(b_ + 3));                                        \
        s4 = _mm_aesenc_si128(s4, _mm_loadu_si128(b_ + 4));                                        \
        s5 = _mm_aesenc_si128(s5, _mm_loadu_si128(b_ + 5));                                        \
        s6 = _mm_aesenc_si128(s6, _mm_loadu_si128(b_ + 6));                                        \
        s7 = _mm_aesenc_si128(s7, _mm_loadu_si128(b_ + 7));                                        \
        s8 = _mm_aesenc_si128(s8, _mm_loadu_si128(b_ + 8));                                        \
        s9 = _mm_aesenc_si128(s9, _mm_loadu_si128(b_ + 9));                                        \
        s10 = _mm_aesenc_si128(s10, _mm_loadu_si128(b_ + 10));                                     \
        s11 = _mm_aesenc_si128(s11, _mm_loadu_si128(b_ + 11));                                     \
        s12 = _mm_aesenc_si128(s12, _mm_loadu_si128(b_ + 12));                                     \
        s13 = _mm_aesenc_si128(s13, _mm_loadu_si128(b_ + 13));                                     \
        s14 = _mm_aesenc_si128(s14, _mm_loadu_si128(b_ + 14));                                     \
        s15 = _mm_aesenc_si128(s15, _mm_loadu_si128(b_ + 15));                                     \
    } while (0)

/* The AES-NI path: one lane per 128-bit register. */
__attribute__((target("aes,sse4.1"), unused)) static unsigned long long
cs_th_aesni(const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    __m128i len, s[CS_TH_LANES];
    __m128i s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15;
    size_t off;
    if (n < CS_TH_BLOCK)
        return cs_th_short(p, n);
    len = _mm_cvtsi64_si128((long long)n);
    s0 = _mm_xor_si128(cs_th_key(0), len);
    s1 = _mm_xor_si128(cs_th_key(1), len);
    s2 = _mm_xor_si128(cs_th_key(2), len);
    s3 = _mm_xor_si128(cs_th_key(3), len);
    s4 = _mm_xor_si128(cs_th_key(4), len);
    s5 = _mm_xor_si128(cs_th_key(5), len);
    s6 = _mm_xor_si128(cs_th_key(6), len);
    s7 = _mm_xor_si128(cs_th_key(7), len);
    s8 = _mm_xor_si128(cs_th_key(8), len);
    s9 = _mm_xor_si128(cs_th_key(9), len);
    s10 = _mm_xor_si128(cs_th_key(10), len);
    s11 = _mm_xor_si128(cs_th_key(11), len);
    s12 = _mm_xor_si128(cs_th_key(12), len);
    s13 = _mm_xor_si128(cs_th_key(13), len);
    s14 = _mm_xor_si128(cs_th_key(14), len);
    s15 = _mm_xor_si128(cs_th_key(15), len);
    for (off = 0; n - off > CS_TH_BLOCK; off += CS_TH_BLOCK)
        CS_TH_ABSORB128(p + off);
    CS_TH_ABSORB128(p + n - CS_TH_BLOCK);
    s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3; s[4] = s4; s[5] = s5; s[6] = s6; s[7] = s7;
    s[8] = s8; s[9] = s9; s[10] = s10; s[11] = s11; s[12] = s12; s[13] = s13; s[14] = s14;
    s[15] = s15;
    return cs_th_finish128(s, CS_TH_LANES, len);
}

#define CS_TH_ABSORB256(q)                                                                         \
    do {                                                                                           \
        const __m256i *b_ = (const __m256i *)(q);                                                  \
        y0 = _mm256_aesenc_epi128(y0, _mm256_loadu_si256(b_ + 0));                                 \
        y1 = _mm256_aesenc_epi128(y1, _mm256_loadu_si256(b_ + 1));                                 \
        y2 = _mm256_aesenc_epi128(y2, _mm256_loadu_si256(b_ + 2));                                 \
        y3 = _mm256_aesenc_epi128(y3, _mm256_loadu_si256(b_ + 3));                                 \
        y4 = _mm256_aesenc_epi128(y4, _mm256_loadu_si256(b_ + 4));                                 \
        y5 = _mm256_aesenc_epi128(y5, _mm256_loadu_si256(b_ + 5));                                 \
        y6 = _mm256_aesenc_epi128(y6, _mm256_loadu_si256(b_ + 6));                                 \
        y7 = _mm256_aesenc_epi128(y7, _mm256_loadu_si256(b_ + 7));                                 \
    } while (0)

/* The VAES path: lanes 2j, 2j+1 in register j (8 independent chains). */
__attribute__((target("vaes,avx2,aes,sse4.1"), unused)) static unsigned long long
cs_th_vaes(const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    const __m256i *keys = (const __m256i *)cs_th_keys;
    __m256i len, y0, y1, y2, y3, y4, y5, y6, y7;
    __m128i h, len128;
    size_t off;
    if (n < CS_TH_BLOCK)
        return cs_th_short(p, n);
    len128 = _mm_cvtsi64_si128((long long)n);
    len = _mm256_broadcastsi128_si256(len128);
    y0 = _mm256_xor_si256(_mm256_loadu_si256(keys + 0), len);
    y1 = _mm256_xor_si256(_mm256_loadu_si256(keys + 1), len);
    y2 = _mm256_xor_si256(_mm256_loadu_si256(keys + 2), len);
    y3 = _mm256_xor_si256(_mm256_loadu_si256(keys + 3), len);
    y4 = _mm256_xor_si256(_mm256_loadu_si256(keys + 4), len);
    y5 = _mm256_xor_si256(_mm256_loadu_si256(keys + 5), len);
    y6 = _mm256_xor_si256(_mm256_loadu_si256(keys + 6), len);
    y7 = _mm256_xor_si256(_mm256_loadu_si256(keys + 7), len);
    for (off = 0; n - off > CS_TH_BLOCK; off += CS_TH_BLOCK)
        CS_TH_ABSORB256(p + off);
    CS_TH_ABSORB256(p + n - CS_TH_BLOCK);
    y0 = _mm256_aesenc_epi128(y0, _mm256_loadu_si256(keys + 0)); /* step 3: two rounds */
    y1 = _mm256_aesenc_epi128(y1, _mm256_loadu_si256(keys + 1));
    y2 = _mm256_aesenc_epi128(y2, _mm256_loadu_si256(keys + 2));
    y3 = _mm256_aesenc_epi128(y3, _mm256_loadu_si256(keys + 3));
    y4 = _mm256_aesenc_epi128(y4, _mm256_loadu_si256(keys + 4));
    y5 = _mm256_aesenc_epi128(y5, _mm256_loadu_si256(keys + 5));
    y6 = _mm256_aesenc_epi128(y6, _mm256_loadu_si256(keys + 6));
    y7 = _mm256_aesenc_epi128(y7, _mm256_loadu_si256(keys + 7));
    y0 = _mm256_aesenc_epi128(y0, _mm256_loadu_si256(keys + 0));
    y1 = _mm256_aesenc_epi128(y1, _mm256_loadu_si256(keys + 1));
    y2 = _mm256_aesenc_epi128(y2, _mm256_loadu_si256(keys + 2));
    y3 = _mm256_aesenc_epi128(y3, _mm256_loadu_si256(keys + 3));
    y4 = _mm256_aesenc_epi128(y4, _mm256_loadu_si256(keys + 4));
    y5 = _mm256_aesenc_epi128(y5, _mm256_loadu_si256(keys + 5));
    y6 = _mm256_aesenc_epi128(y6, _mm256_loadu_si256(keys + 6));
    y7 = _mm256_aesenc_epi128(y7, _mm256_loadu_si256(keys + 7));
    /* Fold 16 -> 8 lanes: lane i with lane i + 8 is register j with register j + 4. */
    y0 = _mm256_aesenc_epi128(y0, y4);
    y1 = _mm256_aesenc_epi128(y1, y5);
    y2 = _mm256_aesenc_epi128(y2, y6);
    y3 = _mm256_aesenc_epi128(y3, y7);
    y0 = _mm256_aesenc_epi128(y0, y2); /* 8 -> 4 */
    y1 = _mm256_aesenc_epi128(y1, y3);
    y0 = _mm256_aesenc_epi128(y0, y1); /* 4 -> 2: lanes 0, 1 in y0 */
    h = _mm_aesenc_si128(_mm256_castsi256_si128(y0), _mm256_extracti128_si256(y0, 1));
    h = _mm_aesenc_si128(h, _mm_xor_si128(cs_th_key(CS_TH_LANES), len128));
    h = _mm_aesenc_si128(h, cs_th_key(CS_TH_LANES + 1));
    h = _mm_aesenc_si128(h, cs_th_key(CS_TH_LANES + 2));
    h = _mm_xor_si128(h, _mm_unpackhi_epi64(h, h));
    return (unsigned long long)_mm_cvtsi128_si64(h);
}

#endif /* CS_TH_X86 */

/* Detect the CPU once; return the name of the hash in use: "aes" or "xxh3". */
static inline const char *
cs_text_hash_init(void)
{
    if (cs_th_best == CS_TH_UNSET) {
        int best = CS_TH_XXH3;
#if CS_TH_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1")) {
            best = CS_TH_AESNI;
            if (__builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx2"))
                best = CS_TH_VAES;
        }
#endif
        cs_th_best = best;
        cs_th_path = best;
    }
    return cs_th_best == CS_TH_XXH3 ? "xxh3" : "aes";
}

/* The hash of data[0:size]: "aes" above when the CPU has AES, else XXH3_64bits. */
static inline unsigned long long
cs_text_hash(const void *data, size_t size)
{
    if (cs_th_path == CS_TH_UNSET)
        cs_text_hash_init();
#if CS_TH_X86
    if (cs_th_path == CS_TH_VAES)
        return cs_th_vaes(data, size);
    if (cs_th_path == CS_TH_AESNI)
        return cs_th_aesni(data, size);
#endif
    return XXH3_64bits(data, size);
}

#endif /* CACHESCOPE_TEXTHASH_H */
