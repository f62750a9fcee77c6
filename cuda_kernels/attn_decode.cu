// cuda_kernels/attn_decode.cu: split-K decode attention on tensor cores, for
// many query heads per KV head (Qwen3: 8). One block per (token t, kv head,
// group of up to 8 query heads, split); the split is a chunk of whole 16-row
// tiles of t's context, sized on the device from t's own length, so that every
// split of a short sequence in a long batch still has work.
//
// Each warp streams its own tiles (tiles w, w + NW, ... of the chunk) through
// an NS-stage cp.async ring in shared memory (16-byte copies, rows padded by
// 16 bytes so that ldmatrix hits distinct banks) and keeps its own online
// softmax; the block merges its warps at the end. Per tile of 16 positions:
//   S = Q K^T  mma.m16n8k16: A = Q (rows 0-7: the heads, rows 8-15: what bf16
//              rounding of Q lost, so S = rows 0-7 + rows 8-15 is ~f32 exact),
//              B = K rows (ldmatrix), 2 n-tiles of 8 positions;
//   P = 2^(S - m) per head (scores in log2 units: Q carries log2(e) / sqrt(hd));
//   O += P V   A = P the same way (rows 0-7 bf16(P), rows 8-15 the remainder),
//              B = V (ldmatrix.trans), HD / 8 n-tiles of output dims; the
//              accumulator rows 8-15 are added to rows 0-7 at the end.
// The S accumulator of an n-tile is the A fragment of P (flash-attention's
// register reuse), so P never leaves registers. The hi/lo split costs nothing
// on S (rows 8-15 would be padding) and keeps the result within f32 rounding
// of the C reference (bf16 Q or P alone would cost ~2e-3 relative).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>

#include "attn_decode.h"
#include "dev_common.cuh"

#define AD_TP 16        // positions per tile
#define AD_GB 8         // query heads per block (the mma's 8 live rows)
#define AD_MIN_TILES 2  // a split gives each warp at least this many tiles of max_ctx
#define AD_MAX_SPLITS 1024

// (a, b) -> bf16x2 hi (a in the low half, as the mma fragments want) and the
// bf16x2 of what rounding lost.
__device__ __forceinline__ void ad_split(float a, float b, uint32_t &hi, uint32_t &lo) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    const float2 hf = __bfloat1622float2(h);
    const __nv_bfloat162 l = __floats2bfloat162_rn(a - hf.x, b - hf.y);
    hi = *(const uint32_t *)&h, lo = *(const uint32_t *)&l;
}
// 16 bytes global -> shared; bytes = 0 fills zeros and reads nothing.
__device__ __forceinline__ void ad_cp16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void ad_ldm4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ad_ldm4t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// Shared memory of one block: NW warps x NS stages x (K tile, V tile), rows of HD + 8 bf16.
template <int HD, int NW, int NS> struct ad_shape {
    static constexpr int KSTR = HD + 8;               // bf16 per shared row (16-byte pad)
    static constexpr int STAGE = 2 * AD_TP * KSTR;    // bf16 per stage: K rows, then V rows
    static constexpr size_t SMEM = (size_t)NW * NS * STAGE * 2;
    static constexpr int MINB = (227 * 1024) / (int)(SMEM + 1024) < 1 ? 1 : (227 * 1024) / (int)(SMEM + 1024);
    static_assert((size_t)NW * AD_GB * HD * 4 <= SMEM, "the merge buffer reuses the stages");
};

template <int HD, int NW, int NS>
__global__ void __launch_bounds__(NW * 32, ad_shape<HD, NW, NS>::MINB)
    attn_decode_mma_kernel(float *__restrict__ out, uint16_t *__restrict__ out_b, float *__restrict__ o_part,
                           float *__restrict__ ml_part,
                           const float *__restrict__ q, const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc,
                           const int32_t *__restrict__ bt, int max_blocks, const int32_t *__restrict__ pos, int nh,
                           int nkv, int bs, int bs_log2, int hgroups, int splits) {
    pdl_trigger(); // the combine kernel (a programmatic dependent) may launch and wait
    using S = ad_shape<HD, NW, NS>;
    constexpr int KSTR = S::KSTR, STAGE = S::STAGE, KSTEPS = HD / 16, NT = HD / 8;
    extern __shared__ __align__(16) uint16_t ad_smem[];
    __shared__ float m_s[NW][AD_GB], l_s[NW][AD_GB];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
    long item = blockIdx.x;
    const int split = (int)(item % splits);
    item /= splits;
    const int hg = (int)(item % hgroups);
    item /= hgroups;
    const int kvh = (int)(item % nkv), t = (int)(item / nkv);
    const int G = nh / nkv, h0 = kvh * G + hg * AD_GB, gh = min(AD_GB, G - hg * AD_GB);
    const size_t row0 = (size_t)t * nh + h0; // output row of head g is row0 + g
    const int n = pos[t] + 1;
    const int chunk = ((n + splits - 1) / splits + AD_TP - 1) / AD_TP * AD_TP;
    const int c0 = split * chunk, c_end = min(n, c0 + chunk);
    if (c0 >= n) { // t's context ends before this split (only when splits > 1)
        for (int i = tid; i < gh * HD; i += NW * 32) o_part[((row0 + i / HD) * splits + split) * HD + i % HD] = 0.f;
        if (tid < gh) ml_part[((row0 + tid) * splits + split) * 2] = -FLT_MAX, ml_part[((row0 + tid) * splits + split) * 2 + 1] = 0.f;
        return;
    }

    const int32_t *tbl = bt + (size_t)t * max_blocks;
    const int kv_dim = nkv * HD;
    const int ntiles = (c_end - c0 + AD_TP - 1) / AD_TP;
    const int my_n = warp < ntiles ? (ntiles - warp + NW - 1) / NW : 0;
    const uint32_t wbuf = (uint32_t)__cvta_generic_to_shared(ad_smem) + (uint32_t)(warp * NS * STAGE * 2);
    // Tile i of this warp into stage st. Lane r < 16 looks up the cache row of
    // tile row r (-1 past the chunk); then each copy instruction moves RPI whole
    // rows, LPR lanes per row on consecutive 16 bytes (full 128-byte lines: a
    // lane per row on 32-byte pieces ran at 75% of the copy bandwidth). Rows past
    // the chunk are zero-filled (V must be finite there: 0 * NaN is NaN).
    constexpr int LPR = HD / 8, RPI = 32 / LPR;
    auto load = [&](int i, int st) {
        const int p0 = c0 + (warp + i * NW) * AD_TP, p = p0 + (lane & 15);
        int crow = -1;
        if (p < c_end) {
            const int blk = bs_log2 >= 0 ? p >> bs_log2 : p / bs, in = bs_log2 >= 0 ? p & (bs - 1) : p % bs;
            crow = tbl[blk] * bs + in;
        }
        const int v8 = lane % LPR;
#pragma unroll
        for (int k = 0; k < AD_TP / RPI; k++) {
            const int r = lane / LPR + RPI * k, row = __shfl_sync(0xffffffffu, crow, r);
            const size_t off = row >= 0 ? (size_t)row * kv_dim + (size_t)kvh * HD + v8 * 8 : 0;
            const uint32_t dk = wbuf + (uint32_t)((st * STAGE + r * KSTR + v8 * 8) * 2);
            ad_cp16(dk, kc + off, row >= 0 ? 16 : 0);
            ad_cp16(dk + AD_TP * KSTR * 2, vc + off, row >= 0 ? 16 : 0);
        }
    };

    float m = -INFINITY, l = 0.f, acc[NT][4];
#pragma unroll
    for (int i = 0; i < NT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
    for (int s = 0; s < NS - 1; s++) {
        if (s < my_n) load(s, s);
        cp_async_commit(); // empty groups too: the wait below counts groups
    }
    // Q fragments, once the first copies are on their way; scaled by log2(e) /
    // sqrt(hd): k-step s holds dims 16 s + 2c (+1) and 16 s + 8 + 2c (+1) of
    // head g, bf16 in row g and the remainder in row g + 8.
    const float qscale = rsqrtf((float)HD) * 1.4426950408889634f;
    uint32_t qa[KSTEPS][4];
#pragma unroll
    for (int s = 0; s < KSTEPS; s++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            float2 v = make_float2(0.f, 0.f);
            if (g < gh) v = *(const float2 *)(q + (row0 + g) * HD + 16 * s + 8 * half + 2 * c);
            ad_split(v.x * qscale, v.y * qscale, qa[s][2 * half], qa[s][2 * half + 1]);
        }

    // ldmatrix lane addresses (bytes within a stage). K: matrix lane / 8 = dims
    // 8 (lane / 8) .. of 32, rows lane % 8 of the n-tile. V (trans): rows
    // lane % 8 + 8 ((lane / 8) & 1), dims 8 (lane / 16) .. of 16.
    const uint32_t k_lane = (uint32_t)(((lane & 7) * KSTR + (lane >> 3) * 8) * 2);
    const uint32_t v_lane = (uint32_t)((AD_TP * KSTR + ((lane & 7) + 8 * ((lane >> 3) & 1)) * KSTR + 8 * (lane >> 4)) * 2);
    for (int i = 0; i < my_n; i++) {
        const int nx = i + NS - 1;
        if (nx < my_n) load(nx, nx % NS);
        cp_async_commit();
        cp_async_wait<NS - 1>(); // this lane's copies of tile i have landed
        __syncwarp();      // ... and every lane's
        const uint32_t sb = wbuf + (uint32_t)((i % NS) * STAGE * 2);
        const int rows = min(AD_TP, c_end - (c0 + (warp + i * NW) * AD_TP));
        // S: n-tile nt = positions 8 nt .. 8 nt + 7; thread (g, c) gets head g at
        // positions 8 nt + 2c, 2c + 1 (sc[nt][0..1]) and their remainders (sc[nt][2..3]).
        float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int kk = 0; kk < HD / 32; kk++) {
                uint32_t b0, b1, b2, b3;
                ad_ldm4(sb + k_lane + (uint32_t)((nt * 8 * KSTR + kk * 32) * 2), b0, b1, b2, b3);
                mma16816(sc[nt], qa[2 * kk], b0, b1);
                mma16816(sc[nt], qa[2 * kk + 1], b2, b3);
            }
        float x[4] = {sc[0][0] + sc[0][2], sc[0][1] + sc[0][3], sc[1][0] + sc[1][2], sc[1][1] + sc[1][3]};
        if (rows < AD_TP) {
#pragma unroll
            for (int j = 0; j < 4; j++)
                if ((j >> 1) * 8 + 2 * c + (j & 1) >= rows) x[j] = -INFINITY;
        }
        float mt = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
        mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
        const float mn = fmaxf(m, mt); // finite: every tile has a live row, padded heads score 0
        if (__any_sync(0xffffffffu, mn > m)) { // rescale only when some head's max grew
            const float corr = ex2_approx(m - mn); // 0 on the first tile (m = -inf)
            l *= corr;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) acc[nt][0] *= corr, acc[nt][1] *= corr, acc[nt][2] *= corr, acc[nt][3] *= corr;
            m = mn;
        }
        float p[4];
#pragma unroll
        for (int j = 0; j < 4; j++) p[j] = ex2_approx(x[j] - m);
        l += (p[0] + p[1]) + (p[2] + p[3]);
        uint32_t pa[4];
        ad_split(p[0], p[1], pa[0], pa[1]);
        ad_split(p[2], p[3], pa[2], pa[3]);
#pragma unroll
        for (int dt = 0; dt < HD / 16; dt++) {
            uint32_t v0, v1, v2, v3;
            ad_ldm4t(sb + v_lane + (uint32_t)(dt * 16 * 2), v0, v1, v2, v3);
            mma16816(acc[2 * dt], pa, v0, v1);
            mma16816(acc[2 * dt + 1], pa, v2, v3);
        }
        __syncwarp(); // every lane has read stage i % NS before it is refilled
    }
    cp_async_wait<0>();
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (c == 0) m_s[warp][g] = m, l_s[warp][g] = l;
    __syncthreads(); // m_s, l_s written; every warp is done with its stages
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; w++) M = fmaxf(M, m_s[w][g]);
    const float f = ex2_approx(m - M); // warp 0 always has a tile: M is finite
    // red: [NW][AD_GB][HD] f32, this warp's output rescaled to the block's max.
    float *red = (float *)ad_smem;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
        *(float2 *)(red + (warp * AD_GB + g) * HD + nt * 8 + 2 * c) =
            make_float2((acc[nt][0] + acc[nt][2]) * f, (acc[nt][1] + acc[nt][3]) * f);
    __syncthreads();
    for (int i = tid; i < gh * HD; i += NW * 32) {
        const int gg = i / HD, d = i % HD;
        float Mg = -INFINITY, v = 0.f, L = 0.f;
#pragma unroll
        for (int w = 0; w < NW; w++) Mg = fmaxf(Mg, m_s[w][gg]);
#pragma unroll
        for (int w = 0; w < NW; w++) v += red[(w * AD_GB + gg) * HD + d], L += l_s[w][gg] * ex2_approx(m_s[w][gg] - Mg);
        if (splits == 1) {
            const float r = v / L;
            out[(row0 + gg) * HD + d] = r;
            if (out_b) {
                const __nv_bfloat16 b = __float2bfloat16(r);
                out_b[(row0 + gg) * HD + d] = *(const uint16_t *)&b;
            }
        } else o_part[((row0 + gg) * splits + split) * HD + d] = v;
    }
    if (splits > 1 && tid < gh) {
        float Mg = -INFINITY, L = 0.f;
#pragma unroll
        for (int w = 0; w < NW; w++) Mg = fmaxf(Mg, m_s[w][tid]);
#pragma unroll
        for (int w = 0; w < NW; w++) L += l_s[w][tid] * ex2_approx(m_s[w][tid] - Mg);
        ml_part[((row0 + tid) * splits + split) * 2] = Mg * 0.6931471805599453f; // log2 -> natural units
        ml_part[((row0 + tid) * splits + split) * 2 + 1] = L;
    }
}

// ---- host side: configurations, plan, launch --------------------------------------
typedef struct {
    int nw, ns, waves; // warps per block, stages per warp, blocks in flight to aim for (x resident blocks)
} ad_config;
static const ad_config ad_configs[JK_ATTN_MMA_CONFIGS] = {{4, 3, 1}, {8, 3, 1}, {4, 3, 2}, {8, 2, 1}, {2, 4, 1}};

template <int HD, int NW, int NS> static int ad_resident_blocks(void) {
    // Blocks of this instance one SM holds (a property of the device and the
    // compiled kernel, asked once per process).
    static int occ = 0;
    if (!occ) {
        const size_t smem = ad_shape<HD, NW, NS>::SMEM;
        int o = 0;
        if (cudaFuncSetAttribute(attn_decode_mma_kernel<HD, NW, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) ==
                cudaSuccess &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&o, attn_decode_mma_kernel<HD, NW, NS>, NW * 32, smem) == cudaSuccess &&
            o > 0)
            occ = o;
        else
            return 1;
    }
    return occ;
}

template <int HD, int NW, int NS>
static int ad_launch(float *out, uint16_t *out_b, float *o_part, float *ml_part, const float *q, const uint16_t *kc, const uint16_t *vc,
                     const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv, int bs, int splits,
                     cudaStream_t st) {
    const size_t smem = ad_shape<HD, NW, NS>::SMEM;
    cudaError_t e = cudaFuncSetAttribute(attn_decode_mma_kernel<HD, NW, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return (int)e;
    const int hgroups = (nh / nkv + AD_GB - 1) / AD_GB;
    int bs_log2 = -1;
    if ((bs & (bs - 1)) == 0)
        for (bs_log2 = 0; (1 << bs_log2) < bs; bs_log2++) {}
    const long blocks = (long)T * nkv * hgroups * splits;
    attn_decode_mma_kernel<HD, NW, NS><<<(unsigned)blocks, NW * 32, smem, st>>>(
        out, out_b, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, nh, nkv, bs, bs_log2, hgroups, splits);
    return (int)cudaGetLastError();
}

// Every (HD, configuration) instance, by table: one switch for the plan and the launch.
#define AD_INSTANCES(X)                                                                     \
    X(64, 4, 3) X(64, 8, 3) X(64, 8, 2) X(64, 2, 4) X(128, 4, 3) X(128, 8, 3) X(128, 8, 2) X(128, 2, 4)

static int ad_resident(int hd, int nw, int ns) {
#define AD_RES(H, W, N) \
    if (hd == H && nw == W && ns == N) return ad_resident_blocks<H, W, N>();
    AD_INSTANCES(AD_RES)
#undef AD_RES
    return 1;
}

extern "C" int jk_attn_mma_supported(int nh, int nkv, int hd) {
    return nkv > 0 && nh % nkv == 0 && (hd == 64 || hd == 128);
}

extern "C" int jk_attn_mma_auto_cfg(int T, int nh, int nkv, int hd, int max_ctx) {
    // Configuration 0 (4 warps, 2 blocks per SM) unless its plan needs a second
    // split (and the combine kernel) where configuration 1 (8 warps, one block
    // per SM) fills the GPU with one: Qwen3 at batch 32 (H100: 23 -> 19 us at
    // 512 positions, 58 -> 54 us at 2048).
    if (jk_attn_mma_splits(0, T, nh, nkv, hd, max_ctx) != 2 || jk_attn_mma_splits(1, T, nh, nkv, hd, max_ctx) != 1) return 0;
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    const long base = (long)T * nkv * ((nh / nkv + AD_GB - 1) / AD_GB);
    const long wave = (long)sms * ad_resident(hd, ad_configs[1].nw, ad_configs[1].ns);
    return base <= wave && 4 * base >= 3 * wave ? 1 : 0;
}

extern "C" int jk_attn_mma_splits(int cfg, int T, int nh, int nkv, int hd, int max_ctx) {
    if (cfg < 0 || cfg >= JK_ATTN_MMA_CONFIGS || T <= 0 || !jk_attn_mma_supported(nh, nkv, hd)) return 1;
    const ad_config *k = &ad_configs[cfg];
    int dev = 0, sms = 132;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        sms = 132;
    const long base = (long)T * nkv * ((nh / nkv + AD_GB - 1) / AD_GB);
    const long wave = (long)sms * ad_resident(hd, k->nw, k->ns) * k->waves;
    long s = (wave + base / 2) / base; // nearest whole number of splits: a wave a little over full costs a second one
    const long per = (long)k->nw * AD_TP * AD_MIN_TILES, most = max_ctx > 0 ? (max_ctx + per - 1) / per : 1;
    if (s > most) s = most;
    if (s > AD_MAX_SPLITS) s = AD_MAX_SPLITS;
    return s < 1 ? 1 : (int)s;
}

extern "C" int jk_attn_mma_run(int cfg, float *out, uint16_t *out_b, float *o_part, float *ml_part, const float *q, const uint16_t *kc,
                               const uint16_t *vc, const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh,
                               int nkv, int hd, int bs, int splits, void *stream) {
    if (cfg < 0 || cfg >= JK_ATTN_MMA_CONFIGS || !jk_attn_mma_supported(nh, nkv, hd)) return (int)cudaErrorInvalidValue;
    const ad_config *k = &ad_configs[cfg];
#define AD_RUN(H, W, N)                                                                                                   \
    if (hd == H && k->nw == W && k->ns == N)                                                                              \
        return ad_launch<H, W, N>(out, out_b, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, bs, splits,         \
                                  (cudaStream_t)stream);
    AD_INSTANCES(AD_RUN)
#undef AD_RUN
    return (int)cudaErrorInvalidValue;
}
