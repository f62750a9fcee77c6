// cuda_kernels/moe_prefill.cu: grouped expert FFN for prefill (see moe_prefill.h).
//
// With tens to thousands of rows per expert the FFN is two GEMMs per expert,
// matrix-bound: bf16 tensor cores, f32 accumulation. Two implementations:
//
// Fused (Hopper; auto takes it when more than JK_PREFILL_GROUPED_MIN experts
// have rows): two persistent warp-specialized wgmma kernels over every
// (expert, 128-row tile, column tile):
//   act = bf16(silu(x_e W_gate_e^T) * (x_e W_up_e^T))   [R, I]   x read as f32
//   y   = act_e W_down_e^T                                [R, H]   f32 out
// A producer thread streams tiles with the bulk tensor copy engine (TMA) into a
// ring of shared-memory stages; two consumer warpgroups (64 rows each) issue
// wgmma. Given bf16 rows (xb: the engine's gather rounds them), kernel 1b takes
// both operands from shared memory; given f32 x, kernel 1 reads x's f32 tile
// from shared memory into registers, rounding to bf16 on the way (wgmma with A
// from registers), so there is no separate f32 -> bf16 pass either way. The B
// tile holds 128 gate rows and the matching 128 up rows of W_gu, so each thread
// holds gate and up of the same columns and SwiGLU is applied in registers.
// Outputs go from the accumulators to a swizzled staging buffer and out by TMA
// stores that run on while the warpgroup starts its next tile. Bytes moved: x once (bf16 as the engine's
// gather writes it, or f32), y once (f32), act twice (bf16), the weights once
// per L2 residency: no gu or yb round trips.
// Figures and what is left: docs/gpu.md (Kernels).
//
// cuBLAS (any GPU; the reference semantics of the first version):
//   xb  = bf16(x)                                    [R, H]   one pass for all rows
//   gu  = xb_e W_gu_e^T    per expert e              [R, 2I]  bf16 out
//   act = bf16(silu(gate) * up)                      [R, I]
//   y   = act_e W_down_e^T per expert e              [R, H]   (grouped: bf16 yb, then f32)
// Row-major [n, K] is column-major [K, n], so each GEMM is C (N x n) =
// op_T(W: K x N) * (X: K x n), as the dense projections in engine/gpu.c.
// cublasGemmGroupedBatchedEx covers every expert in one call but writes bf16
// only (bf16 x bf16 -> f32 is not one of its type combinations); the loop
// path issues one cublasGemmEx per expert and writes f32 y directly.
//
// The wgmma kernels need the sm_90a target: meson builds this file for it too
// and defines JK_PREFILL_SM90A; without that (or off compute capability 9.0)
// the fused mode falls back to the cuBLAS paths.
#include <cublas_v2.h>
#include <cuda.h> // CUtensorMap (the encoder is fetched through the runtime: no libcuda link)
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe_prefill.h"

#define ST(s) ((cudaStream_t)(s))
#define ALIGN_UP(n) (((n) + 255) & ~(size_t)255)

// Workspace layout (offsets in bytes, each region 256-byte aligned).
typedef struct {
    size_t xb, gu, act, ptrs, total;
} ws_layout;

static ws_layout layout(int R, int H, int I) {
    ws_layout l;
    l.xb = 0;                                              // bf16 [R, H] x, later y (grouped path)
    l.gu = l.xb + ALIGN_UP((size_t)R * H * 2);             // bf16 [R, 2I]
    l.act = l.gu + ALIGN_UP((size_t)R * 2 * I * 2);        // bf16 [R, I] (the fused path uses only this)
    l.ptrs = l.act + ALIGN_UP((size_t)R * I * 2);          // 6 x JK_PREFILL_MAX_GROUPS pointers
    l.total = l.ptrs + ALIGN_UP(6 * (size_t)JK_PREFILL_MAX_GROUPS * sizeof(void *));
    return l;
}

extern "C" size_t jk_moe_prefill_ws_bytes(int R, int H, int I) { return layout(R > 0 ? R : 0, H, I).total; }

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
__device__ __forceinline__ float lo_f(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi_f(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// dst: [n8 * 8] bf16 = src f32, 8 elements (32 bytes in, 16 out) per step.
__global__ void f32_to_bf16_x8_kernel(uint4 *__restrict__ dst, const float4 *__restrict__ src, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const float4 a = src[2 * i], b = src[2 * i + 1];
        dst[i] = make_uint4(pack2(a.x, a.y), pack2(a.z, a.w), pack2(b.x, b.y), pack2(b.z, b.w));
    }
}

// dst: [n8 * 8] f32 = src bf16.
__global__ void bf16_to_f32_x8_kernel(float4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = src[i];
        dst[2 * i] = make_float4(lo_f(v.x), hi_f(v.x), lo_f(v.y), hi_f(v.y));
        dst[2 * i + 1] = make_float4(lo_f(v.z), hi_f(v.z), lo_f(v.w), hi_f(v.w));
    }
}

// act: [R, I] bf16 = silu(gu[r, n]) * gu[r, I + n], gu: [R, 2I] bf16; 8 columns per step (I % 8 == 0).
__global__ void swiglu_bf16_kernel(uint4 *__restrict__ act, const uint4 *__restrict__ gu, int I8, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / I8, c = i % I8;
        const uint4 g = gu[r * 2 * I8 + c], u = gu[r * 2 * I8 + I8 + c];
        const uint32_t gw[4] = {g.x, g.y, g.z, g.w}, uw[4] = {u.x, u.y, u.z, u.w};
        uint32_t o[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float g0 = lo_f(gw[k]), g1 = hi_f(gw[k]);
            o[k] = pack2(g0 / (1.0f + __expf(-g0)) * lo_f(uw[k]), g1 / (1.0f + __expf(-g1)) * hi_f(uw[k]));
        }
        act[i] = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

// Device pointer arrays of the two grouped GEMMs, from host-known (expert, first row)
// pairs passed by value (no host buffer has to outlive the launch).
typedef struct {
    int n;
    int e[JK_PREFILL_MAX_GROUPS], r0[JK_PREFILL_MAX_GROUPS];
} group_list;

__global__ void prefill_ptrs_kernel(const void **p, group_list gl, const __nv_bfloat16 *w_gu, const __nv_bfloat16 *w_down,
                                    const __nv_bfloat16 *xin, __nv_bfloat16 *yb, __nv_bfloat16 *gu, __nv_bfloat16 *act,
                                    int H, int I) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= gl.n) return;
    const size_t e = gl.e[i], r0 = gl.r0[i];
    const int M = JK_PREFILL_MAX_GROUPS;
    p[0 * M + i] = w_gu + e * 2 * I * H; // GEMM 1: A = W_gu_e, B = x_e (bf16), C = gu_e
    p[1 * M + i] = xin + r0 * H;
    p[2 * M + i] = gu + r0 * 2 * I;
    p[3 * M + i] = w_down + e * H * I;   // GEMM 2: A = W_down_e, B = act_e, C = yb_e (ws's xb region)
    p[4 * M + i] = act + r0 * I;
    p[5 * M + i] = yb + r0 * H;
}

static unsigned grid_for(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 8192 ? (b ? b : 1) : 8192);
}

// ---- fused path: persistent warp-specialized wgmma kernels (sm_90a) ----------------
//
// Tiles: PF_BM rows of one expert (rows past the expert's end are computed from
// whatever lies there and never stored) x PF_N1 act columns (kernel 1) or PF_N2
// y columns (kernel 2); K in blocks of PF_BK. Every shared-memory tile is
// 128-byte rows written by TMA with the 128-byte swizzle (16-byte chunk c of row
// r lands at chunk c ^ (r % 8)), each tile 1024-byte aligned.
#define PF_BM 128
#define PF_BK 64
#define PF_N1 128                                        // act columns per tile (B: 128 gate + 128 up rows)
#define PF_N2 256                                        // y columns per tile
#define PF_ST1 3                                         // stages, kernel 1
#define PF_A1 (PF_BM * PF_BK * 4)                        // x tile, f32: two [128][32] boxes, 32 KB
#define PF_STAGE1 (PF_A1 + 2 * PF_N1 * PF_BK * 2)        // + W_gu [256][64] bf16: 64 KB
#define PF_A2 (PF_BM * PF_BK * 2)                        // act or bf16 x tile [128][64]: 16 KB
#define PF_STAGE2 (PF_A2 + PF_N2 * PF_BK * 2)            // + W_down [256][64] or W_gu [2][128][64] bf16: 48 KB
// Output staging per consumer warpgroup (its 64 tile rows), written from the
// accumulators and stored by TMA while the warpgroup goes on to the next tile:
#define PF_OUT1 (64 * PF_N1 * 2)                         // act: two [64][64] bf16 boxes, 16 KB
#define PF_SMEM1 (PF_ST1 * PF_STAGE1 + 2 * PF_OUT1 + 1024 + 2 * PF_ST1 * 8) // + alignment slack + barriers
#define PF_THREADS 384                                   // kernels 1b, 2: warpgroup 0 producer; 1, 2 consumers
#define PF_THREADS1 288                                  // kernel 1: warpgroups 0, 1 consumers; warp 8 producer
#define PF_M_INNER_NT 16 // more column tiles than this (Mixtral's 28672 gate/up rows): row tiles innermost

// The active experts as the kernels see them (by value, in the constant bank).
typedef struct {
    int n;                                    // groups (active experts), ascending rows
    int r0[JK_PREFILL_MAX_GROUPS + 1];        // group g's rows: r0[g] .. r0[g + 1] - 1
    int rt0[JK_PREFILL_MAX_GROUPS + 1];       // its first row tile: sum over earlier groups of ceil(rows / PF_BM)
    unsigned short e[JK_PREFILL_MAX_GROUPS];  // its expert
} fused_groups;

// Tile t of a kernel with nt column tiles per row tile: tiles run group by group
// (group g owns tiles rt0[g] nt .. rt0[g + 1] nt - 1); within a group column
// tiles innermost (neighbouring CTAs share x or act rows; the expert's weights
// stay in L2), or with m_inner row tiles innermost (for experts whose weights
// outgrow L2: each weight tile is read once while the group's rows stay).
typedef struct {
    int row0, rows, e, col0;
} tile_pos;

__device__ __forceinline__ tile_pos tile_at(const fused_groups &fg, int t, int nt, int ncols, int m_inner) {
    const int q = t / nt;
    int lo = 0, hi = fg.n - 1; // the group with rt0[g] <= q < rt0[g + 1]
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (fg.rt0[mid] <= q) lo = mid;
        else hi = mid - 1;
    }
    const int l = t - fg.rt0[lo] * nt, nr = fg.rt0[lo + 1] - fg.rt0[lo];
    const int rt = m_inner ? l % nr : l / nt, ct = m_inner ? l / nr : l % nt;
    tile_pos p;
    p.row0 = fg.r0[lo] + rt * PF_BM;
    p.rows = min(PF_BM, fg.r0[lo + 1] - p.row0);
    p.e = fg.e[lo];
    p.col0 = ct * ncols;
    return p;
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define PF_DEVICE_OK 1
#endif

#ifdef PF_DEVICE_OK
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// Waits for the phase of parity `parity` to complete. A wait that cannot end (a
// bug, not a slow GPU: the longest legitimate one is a few tile loads) traps
// after 10 s instead of hanging the stream.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok = 0;
    uint64_t t0 = 0;
#pragma unroll 1
    for (uint32_t spin = 1;; spin++) {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(ok)
                     : "r"(bar), "r"(parity)
                     : "memory");
        if (ok) return;
        if (spin % 4096 == 0) {
            uint64_t now;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
            if (!t0) t0 = now;
            else if (now - t0 > 10000000000ull) __trap();
        }
    }
}

// TMA: a box of `map` at element coordinates (c0 innermost, ...) into shared
// memory at dst, counted on barrier bar.
__device__ __forceinline__ void tma_2d(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
                     dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void tma_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(
            dst),
        "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}

// TMA store of one box of `map` at (c0, c1) from shared memory at src (elements
// past the tensor's edges are not written), in this thread's current bulk group.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap *map, int c0, int c1, uint32_t src) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"((uint64_t)map), "r"(c0),
                 "r"(c1), "r"(src)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// This thread's bulk stores have read their shared memory (it may be written again).
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory"); }
// ... and are complete.
__device__ __forceinline__ void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }
// Shared-memory writes of this thread visible to the TMA (async proxy).
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
// Barrier of one consumer warpgroup (ids 1, 2; 0 is __syncthreads).
__device__ __forceinline__ void wg_bar(int id) { asm volatile("bar.sync %0, 128;" ::"r"(id) : "memory"); }
__device__ __forceinline__ void sts_u32(uint32_t addr, uint32_t v) {
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ void sts_f2(uint32_t addr, float x, float y) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(x), "f"(y) : "memory");
}
__device__ __forceinline__ float silu_mul(float g, float u) { return __fdividef(g, 1.0f + __expf(-g)) * u; }

// wgmma shared-memory descriptor of a K-major tile of 128-byte rows with the
// 128-byte swizzle: 8-row groups 1024 bytes apart; +2 per 16-element K step.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Pins the accumulators in place around the asynchronous MMAs (no moves of them
// across a wgmma that has not completed).
__device__ __forceinline__ void fence_acc(float (&d)[128]) {
#pragma unroll
    for (int i = 0; i < 128; i++) asm volatile("" : "+f"(d[i])::"memory");
}

#define WG_D128                                                                                             \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "  \
    "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, " \
    "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, " \
    "%62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
    "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, "     \
    "%101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, "     \
    "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define D8(i) \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define D128                                                                                                      \
    D8(0), D8(8), D8(16), D8(24), D8(32), D8(40), D8(48), D8(56), D8(64), D8(72), D8(80), D8(88), D8(96), D8(104), \
        D8(112), D8(120)

// d[128] += A x B, m64n256k16, bf16 in, f32 accumulators (thread's rows g, g + 8 of
// its warp's 16, columns 8 j + 2 t, + 1 for d[4 j .. 4 j + 3]).
// A from registers: a0 (row g, k 2t..2t+1), a1 (row g + 8), a2 (row g, k + 8), a3.
__device__ __forceinline__ void wgmma_rs(float (&d)[128], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" WG_D128
                 "}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
                 : D128
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));
}
// A from shared memory (descriptor da), B (descriptor db).
__device__ __forceinline__ void wgmma_ss(float (&d)[128], uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" WG_D128 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : D128
                 : "l"(da), "l"(db), "r"(1));
}

__device__ __forceinline__ float2 lds_f2(uint32_t addr) {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr));
    return v;
}

// A fragments of half a 64-wide K block (K steps j = 2 hk, 2 hk + 1) from kernel
// 1's f32 x tile (two swizzled [128][32] f32 boxes at sa, sa + 16 KB: box hk),
// rounded to bf16: a[4 i ..] for K step 2 hk + i. rl: the thread's first tile row
// (64 c + 16 w + g; rl % 8 == g).
__device__ __forceinline__ void load_a_f32(uint32_t (&a)[8], uint32_t sa, int hk, int rl, int g, int t) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint32_t row = sa + hk * (PF_BM * 32 * 4) + rl * 128 + (t & 1) * 8;
        const int c0 = 4 * i + (t >> 1); // 16-byte chunk of k = 16 i + 2 t in the box; k + 8 is chunk c0 + 2
        const float2 v0 = lds_f2(row + ((c0 ^ g) << 4)), v1 = lds_f2(row + 8 * 128 + ((c0 ^ g) << 4));
        const float2 v2 = lds_f2(row + (((c0 + 2) ^ g) << 4)), v3 = lds_f2(row + 8 * 128 + (((c0 + 2) ^ g) << 4));
        a[4 * i + 0] = pack2(v0.x, v0.y);
        a[4 * i + 1] = pack2(v1.x, v1.y);
        a[4 * i + 2] = pack2(v2.x, v2.y);
        a[4 * i + 3] = pack2(v3.x, v3.y);
    }
}

__device__ __forceinline__ void barriers_init(uint32_t bar, int stages) {
    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(bar + 8 * s, 1), mbar_init(bar + 8 * (stages + s), 8);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
}

// One K block of kernel 1's consumer warpgroup: wait for stage s, then in two
// halves of two K steps: x rows to bf16 A fragments (x, then y), 2 wgmma against
// the stage's W_gu tile, wait for them. A wgmma reads its A registers
// asynchronously, so they are written only while none of this warpgroup's
// wgmma is in flight (with one left in flight, ptxas serializes every wgmma:
// warnings C7512/C7513); the other warpgroup keeps the tensor cores busy
// meanwhile. The previous block's stage is freed after the first half.
__device__ __forceinline__ void gate_up_block(float (&d)[128], uint32_t (&x)[8], uint32_t (&y)[8], uint32_t base,
                                              uint32_t full, uint32_t empty, int &s, uint32_t &ph, int &prev, int rl,
                                              int g, int tq, int lane) {
    mbar_wait(full + 8 * s, ph);
    const uint32_t sa = base + s * PF_STAGE1;
    const uint64_t db = sw128_desc(sa + PF_A1);
    load_a_f32(x, sa, 0, rl, g, tq);
    wg_fence();
    fence_acc(d);
    wgmma_rs(d, x[0], x[1], x[2], x[3], db);
    wgmma_rs(d, x[4], x[5], x[6], x[7], db + 2);
    wg_commit();
    wg_wait<0>(); // this half is done, and with it the previous block: free its stage
    fence_acc(d);
    if (prev >= 0) {
        __syncwarp();
        if (lane == 0) mbar_arrive(empty + 8 * prev);
    }
    load_a_f32(y, sa, 1, rl, g, tq);
    wg_fence();
    fence_acc(d);
    wgmma_rs(d, y[0], y[1], y[2], y[3], db + 4);
    wgmma_rs(d, y[4], y[5], y[6], y[7], db + 6);
    wg_commit();
    wg_wait<0>();
    fence_acc(d);
    prev = s;
    if (++s == PF_ST1) s = 0, ph ^= 1;
}

// Gate/up epilogue of consumer warpgroup c (its 64 rows of tile p): act =
// bf16(silu(gate) * up) from the accumulators, through its staging buffer stg and
// TMA stores (map to, box [64][64]) when all 64 rows are the expert's, else from
// registers. The stores are left in flight (the caller waits before exiting).
__device__ __forceinline__ void store_act(const float (&d)[128], const tile_pos &p, const CUtensorMap *to, __nv_bfloat16 *act,
                                          int I, uint32_t stg, int c, int w, int g, int tq, int rl, bool leader) {
    // d[4 j + 2 h + i]: tile row rl + 8 h, column col0 + 8 j + 2 tq + i; gate j < 16, its up j + 16
    if (64 * c + 64 <= p.rows) {
        // act box b (columns col0 + 64 b ..) row r: 128 bytes at stg + 8 KB b + 128 r, 16-byte
        // chunk j % 8 swizzled to (j % 8) ^ (r % 8), r % 8 == g; this thread's 4 bytes at 4 tq
        if (leader) bulk_wait_read(); // the previous tile's stores have left the staging buffer
        wg_bar(1 + c);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint32_t row = stg + (16 * w + g + 8 * h) * 128 + 4 * tq;
#pragma unroll
            for (int j = 0; j < 16; j++)
                sts_u32(row + (j / 8) * 8192 + (((j % 8) ^ g) << 4),
                        pack2(silu_mul(d[4 * j + 2 * h], d[4 * (j + 16) + 2 * h]),
                              silu_mul(d[4 * j + 2 * h + 1], d[4 * (j + 16) + 2 * h + 1])));
        }
        fence_async_smem();
        wg_bar(1 + c);
        if (leader) {
            tma_store_2d(to, p.col0, p.row0 + 64 * c, stg);
            if (p.col0 + 64 < I) tma_store_2d(to, p.col0 + 64, p.row0 + 64 * c, stg + 8192);
            bulk_commit();
        }
        return;
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = rl + 8 * h;
        if (r >= p.rows) continue;
        __nv_bfloat16 *dst = act + (size_t)(p.row0 + r) * I;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const int col = p.col0 + 8 * j + 2 * tq;
            if (col < I)
                *(uint32_t *)(dst + col) = pack2(silu_mul(d[4 * j + 2 * h], d[4 * (j + 16) + 2 * h]),
                                                 silu_mul(d[4 * j + 2 * h + 1], d[4 * (j + 16) + 2 * h + 1]));
        }
    }
}
#endif

// Kernel 1: act[r, c] = bf16(silu(x_r . W_gate_e[c]) * (x_r . W_up_e[c])) for every
// row r of every tile; x: map tx over [R, H] f32 (box [128][32]), W_gu: map tw
// over [E, 2I, H] bf16 (box [1][128][64]); act: [R, I] bf16, stored through map
// to (box [64][64]) or, for a warpgroup whose 64 rows are not all the expert's,
// from registers.
__global__ void __launch_bounds__(PF_THREADS1, 1)
    pf_gate_up_kernel(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                      const __grid_constant__ CUtensorMap to, __nv_bfloat16 *act, const __grid_constant__ fused_groups fg,
                      int H, int I, int tiles) {
#ifdef PF_DEVICE_OK
    extern __shared__ unsigned char smem_raw[];
    const uint32_t base = (smem_u32(smem_raw) + 1023) & ~1023u;
    const uint32_t out = base + PF_ST1 * PF_STAGE1;                      // staging of warpgroup c: + c PF_OUT1
    const uint32_t full = out + 2 * PF_OUT1, empty = full + 8 * PF_ST1; // barrier of stage s: + 8 s
    const int wg = threadIdx.x / 128, nt = (I + PF_N1 - 1) / PF_N1, nk = (H + PF_BK - 1) / PF_BK;
    barriers_init(full, PF_ST1);
    if (wg == 2) { // producer warp: one thread issues every load
        if (threadIdx.x != 256) return;
        int s = 0;
        uint32_t ph = 0;
        for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
            const tile_pos p = tile_at(fg, t, nt, PF_N1, nt > PF_M_INNER_NT);
            for (int kb = 0; kb < nk; kb++) {
                mbar_wait(empty + 8 * s, ph ^ 1);
                const uint32_t sa = base + s * PF_STAGE1, sb = sa + PF_A1, fb = full + 8 * s;
                mbar_expect_tx(fb, PF_STAGE1);
                tma_2d(sa, &tx, kb * PF_BK, p.row0, fb);
                tma_2d(sa + PF_A1 / 2, &tx, kb * PF_BK + 32, p.row0, fb);
                tma_3d(sb, &tw, kb * PF_BK, p.col0, p.e, fb);                        // gate rows
                tma_3d(sb + PF_N1 * PF_BK * 2, &tw, kb * PF_BK, I + p.col0, p.e, fb); // up rows
                if (++s == PF_ST1) s = 0, ph ^= 1;
            }
        }
        return;
    }
    const int c = wg, w = threadIdx.x / 32 % 4, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int rl = 64 * c + 16 * w + g; // this thread's tile rows: rl, rl + 8
    const bool leader = threadIdx.x % 128 == 0; // issues and waits for the warpgroup's TMA stores
    const uint32_t stg = out + c * PF_OUT1;
    int s = 0;
    uint32_t ph = 0;
    float d[128];
    uint32_t ax[8], ay[8]; // A fragments of the two halves of a K block
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const tile_pos p = tile_at(fg, t, nt, PF_N1, nt > PF_M_INNER_NT);
#pragma unroll
        for (int i = 0; i < 128; i++) d[i] = 0.0f;
        int prev = -1;
        for (int kb = 0; kb < nk; kb++) gate_up_block(d, ax, ay, base, full, empty, s, ph, prev, rl, g, tq, lane);
        wg_wait<0>();
        fence_acc(d);
        __syncwarp();
        if (lane == 0) mbar_arrive(empty + 8 * prev);
        store_act(d, p, &to, act, I, stg, c, w, g, tq, rl, leader);
    }
    if (leader) bulk_wait();
#else
    __trap(); // built without sm_90a: the host never launches this
#endif
}

// Kernels 1b and 2, both operands from shared memory (A and B tiles by TMA):
//   GU (1b): act = bf16(silu(x_e W_gate_e^T) * (x_e W_up_e^T)), x bf16 [R, H]: map ta
//            (box [128][64]), W_gu: map tw over [E, 2I, H] (box [1][128][64], loaded
//            twice: 128 gate rows, the matching 128 up rows); act out as kernel 1.
//   !GU (2): y = act_e W_down_e^T, act: map ta over [R, I] bf16 (box [128][64]),
//            W_down: map tw over [E, H, I] (box [1][256][64]); y: [R, H] f32, stored
//            through map to (box [64][32]) in YR rounds from a staging buffer of
//            256 / YR columns, or from registers (rows not all the expert's).
// ST shared-memory stages of 48 KB. Warpgroup 0 produces, 1 and 2 consume; each
// consumer keeps one K block of wgmma in flight while it waits for the next.
template <bool GU, int ST, int YR> struct pf_ss_cfg {
    static constexpr int out = GU ? PF_OUT1 : 64 * PF_N2 * 4 / YR;     // staging per consumer warpgroup
    static constexpr int smem = ST * PF_STAGE2 + 2 * out + 1024 + 2 * ST * 8;
    static_assert(smem <= 232448, "more shared memory than an H100 block has (fewer stages or more y rounds)");
    static_assert(YR == 1 || YR == 2 || YR == 4 || YR == 8, "y rounds: 1, 2, 4 or 8 (whole 32-column boxes)");
    static_assert(ST >= 2, "at least two stages");
};
template <bool GU, int ST, int YR>
__global__ void __launch_bounds__(PF_THREADS, 1)
    pf_ss_kernel(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tw,
                 const __grid_constant__ CUtensorMap to, void *outp, const __grid_constant__ fused_groups fg, int H, int I,
                 int tiles) {
#ifdef PF_DEVICE_OK
    typedef pf_ss_cfg<GU, ST, YR> cfg;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t base = (smem_u32(smem_raw) + 1023) & ~1023u;
    const uint32_t out = base + ST * PF_STAGE2;
    const uint32_t full = out + 2 * cfg::out, empty = full + 8 * ST;
    const int ncols = GU ? PF_N1 : PF_N2, ncol = GU ? I : H, kdim = GU ? H : I;
    const int wg = threadIdx.x / 128, nt = (ncol + ncols - 1) / ncols, nk = (kdim + PF_BK - 1) / PF_BK;
    barriers_init(full, ST);
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (threadIdx.x != 0) return;
        int s = 0;
        uint32_t ph = 0;
        for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
            const tile_pos p = tile_at(fg, t, nt, ncols, nt > PF_M_INNER_NT);
            for (int kb = 0; kb < nk; kb++) {
                mbar_wait(empty + 8 * s, ph ^ 1);
                const uint32_t sa = base + s * PF_STAGE2, fb = full + 8 * s;
                mbar_expect_tx(fb, PF_STAGE2);
                tma_2d(sa, &ta, kb * PF_BK, p.row0, fb);
                tma_3d(sa + PF_A2, &tw, kb * PF_BK, p.col0, p.e, fb);
                if (GU) tma_3d(sa + PF_A2 + PF_N1 * PF_BK * 2, &tw, kb * PF_BK, I + p.col0, p.e, fb); // up rows
                if (++s == ST) s = 0, ph ^= 1;
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int c = wg - 1, w = threadIdx.x / 32 % 4, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    const int rl = 64 * c + 16 * w + g;
    const bool leader = threadIdx.x % 128 == 0;
    const uint32_t stg = out + c * cfg::out;
    int s = 0;
    uint32_t ph = 0;
    float d[128];
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const tile_pos p = tile_at(fg, t, nt, ncols, nt > PF_M_INNER_NT);
#pragma unroll
        for (int i = 0; i < 128; i++) d[i] = 0.0f;
        int prev = -1;
        for (int kb = 0; kb < nk; kb++) {
            mbar_wait(full + 8 * s, ph);
            const uint32_t sa = base + s * PF_STAGE2;
            const uint64_t da = sw128_desc(sa + c * (64 * 128)), db = sw128_desc(sa + PF_A2);
            wg_fence();
            fence_acc(d);
#pragma unroll
            for (int j = 0; j < 4; j++) wgmma_ss(d, da + 2 * j, db + 2 * j);
            wg_commit();
            wg_wait<1>();
            fence_acc(d);
            if (prev >= 0) {
                __syncwarp();
                if (lane == 0) mbar_arrive(empty + 8 * prev);
            }
            prev = s;
            if (++s == ST) s = 0, ph ^= 1;
        }
        wg_wait<0>();
        fence_acc(d);
        __syncwarp();
        if (lane == 0) mbar_arrive(empty + 8 * prev);
        if (GU) {
            store_act(d, p, &to, (__nv_bfloat16 *)outp, I, stg, c, w, g, tq, rl, leader);
            continue;
        }
        // d[4 j + 2 h + i]: tile row rl + 8 h, column col0 + 8 j + 2 tq + i
        if (64 * c + 64 <= p.rows) {
            // YR rounds of 256 / YR columns; y box b (32 columns) row r: 128 bytes at stg + 8 KB b +
            // 128 r, 16-byte chunk 2 (j % 4) + tq / 2 swizzled by r % 8 == g; 8 bytes at 8 (tq % 2)
#pragma unroll
            for (int rd = 0; rd < YR; rd++) {
                if (leader) bulk_wait_read(); // the staging buffer is free again
                wg_bar(1 + c);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t row = stg + (16 * w + g + 8 * h) * 128 + 8 * (tq % 2);
#pragma unroll
                    for (int jj = 0; jj < 32 / YR; jj++) {
                        const int j = 32 / YR * rd + jj;
                        sts_f2(row + (jj / 4) * 8192 + (((2 * (jj % 4) + tq / 2) ^ g) << 4), d[4 * j + 2 * h],
                               d[4 * j + 2 * h + 1]);
                    }
                }
                fence_async_smem();
                wg_bar(1 + c);
                if (leader) {
#pragma unroll
                    for (int b = 0; b < 8 / YR; b++) {
                        const int col = p.col0 + PF_N2 / YR * rd + 32 * b;
                        if (col < H) tma_store_2d(&to, col, p.row0 + 64 * c, stg + b * 8192);
                    }
                    bulk_commit();
                }
            }
            continue;
        }
        float *y = (float *)outp;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = rl + 8 * h;
            if (r >= p.rows) continue;
            float *dst = y + (size_t)(p.row0 + r) * H;
#pragma unroll
            for (int j = 0; j < 32; j++) {
                const int col = p.col0 + 8 * j + 2 * tq;
                if (col < H) *(float2 *)(dst + col) = make_float2(d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
            }
        }
    }
    if (leader) bulk_wait();
#else
    __trap();
#endif
}

// The variants the host launches (measured against others in docs/gpu.md; the
// probe builds others with -D).
#ifndef PF_ST_GU
#define PF_ST_GU 4
#endif
#ifndef PF_ST_DOWN
#define PF_ST_DOWN 4
#endif
#ifndef PF_YR
#define PF_YR 4
#endif
#define pf_gate_up_ss_kernel pf_ss_kernel<true, PF_ST_GU, 1>
#define pf_down_kernel pf_ss_kernel<false, PF_ST_DOWN, PF_YR>
#define PF_SMEM1B (pf_ss_cfg<true, PF_ST_GU, 1>::smem)
#define PF_SMEM2 (pf_ss_cfg<false, PF_ST_DOWN, PF_YR>::smem)

#define CUDA_TRY(x)                                   \
    do {                                              \
        cudaError_t e_ = (x);                         \
        if (e_ != cudaSuccess) return (int)e_;        \
    } while (0)
#define LAUNCH_TRY() CUDA_TRY(cudaGetLastError())
#define BLAS_TRY(x)                                                          \
    do {                                                                     \
        cublasStatus_t s_ = (x);                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS) return JK_PREFILL_CUBLAS_ERR + (int)s_; \
    } while (0)

// The driver's tensor-map encoder, through the runtime (no libcuda link). Looked
// up once: every lookup gives the same pointer.
static PFN_cuTensorMapEncodeTiled_v12000 tmap_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    if (!fn) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

// A row-major tensor (dims innermost first, row pitches in bytes) read in
// 128-byte-swizzled boxes; elements past its edges read as zero.
static int tmap_make(CUtensorMap *m, CUtensorMapDataType dt, int rank, const void *ptr, const cuuint64_t *dims,
                     const cuuint64_t *pitch, const cuuint32_t *box) {
    static const cuuint32_t ones[3] = {1, 1, 1};
    PFN_cuTensorMapEncodeTiled_v12000 enc = tmap_encoder();
    if (!enc) return (int)cudaErrorNotSupported;
    const CUresult r = enc(m, dt, (cuuint32_t)rank, (void *)ptr, dims, pitch, box, ones, CU_TENSOR_MAP_INTERLEAVE_NONE,
                           CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? 0 : (int)cudaErrorInvalidValue;
}

// Whether this build and the current device run the fused kernels.
extern "C" int jk_moe_prefill_fused_available(void) {
#ifdef JK_PREFILL_SM90A
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
        return 0;
    return major == 9 && minor == 0 && tmap_encoder() != NULL;
#else
    return 0;
#endif
}

static int fused_run(const jk_moe_prefill_args *a, __nv_bfloat16 *act, cudaStream_t st) {
    const int E = a->E, H = a->H, I = a->I, R = a->h_seg[E];
    fused_groups fg;
    fg.n = 0;
    fg.rt0[0] = 0;
    for (int e = 0; e < E; e++) {
        const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
        if (n <= 0) continue;
        const int i = fg.n++;
        fg.r0[i] = r0, fg.r0[i + 1] = r0 + n;
        fg.e[i] = (unsigned short)e;
        fg.rt0[i + 1] = fg.rt0[i] + (n + PF_BM - 1) / PF_BM;
    }
    const int row_tiles = fg.rt0[fg.n];
    const int tiles1 = row_tiles * ((I + PF_N1 - 1) / PF_N1), tiles2 = row_tiles * ((H + PF_N2 - 1) / PF_N2);
    CUtensorMap tx, twgu, tact, twd, tact_st, ty_st;
    {
        const cuuint64_t dx[2] = {(cuuint64_t)H, (cuuint64_t)R}, px[1] = {(cuuint64_t)H * 4};
        const cuuint32_t bx[2] = {32, PF_BM};
        const cuuint64_t dg[3] = {(cuuint64_t)H, (cuuint64_t)2 * I, (cuuint64_t)E},
                         pg[2] = {(cuuint64_t)H * 2, (cuuint64_t)2 * I * H * 2};
        const cuuint32_t bg[3] = {PF_BK, PF_N1, 1};
        const cuuint64_t da[2] = {(cuuint64_t)I, (cuuint64_t)R}, pa[1] = {(cuuint64_t)I * 2};
        const cuuint32_t ba[2] = {PF_BK, PF_BM};
        const cuuint64_t dd[3] = {(cuuint64_t)I, (cuuint64_t)H, (cuuint64_t)E}, pd[2] = {(cuuint64_t)I * 2, (cuuint64_t)H * I * 2};
        const cuuint32_t bd[3] = {PF_BK, PF_N2, 1};
        const cuuint32_t bas[2] = {64, 64};                                     // act stores: [64][64] bf16
        const cuuint64_t dy[2] = {(cuuint64_t)H, (cuuint64_t)R}, py[1] = {(cuuint64_t)H * 4};
        const cuuint32_t bys[2] = {32, 64};                                     // y stores: [64][32] f32
        int rc;
        const cuuint64_t pxb[1] = {(cuuint64_t)H * 2};
        const cuuint32_t bxb[2] = {PF_BK, PF_BM};
        if (a->xb) rc = tmap_make(&tx, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, a->xb, dx, pxb, bxb);
        else rc = tmap_make(&tx, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, a->x, dx, px, bx);
        if (rc) return rc;
        if ((rc = tmap_make(&twgu, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, a->w_gu, dg, pg, bg))) return rc;
        if ((rc = tmap_make(&tact, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, act, da, pa, ba))) return rc;
        if ((rc = tmap_make(&twd, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, a->w_down, dd, pd, bd))) return rc;
        if ((rc = tmap_make(&tact_st, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, act, da, pa, bas))) return rc;
        if ((rc = tmap_make(&ty_st, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, a->y, dy, py, bys))) return rc;
    }
    int dev = 0, sms = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CUDA_TRY(cudaFuncSetAttribute(pf_down_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM2));
    if (a->xb) { // bf16 rows: both operands by TMA (kernel 1b)
        CUDA_TRY(cudaFuncSetAttribute(pf_gate_up_ss_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM1B));
        pf_gate_up_ss_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS, PF_SMEM1B, st>>>(tx, twgu, tact_st, act, fg, H, I, tiles1);
    } else {
        CUDA_TRY(cudaFuncSetAttribute(pf_gate_up_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM1));
        pf_gate_up_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS1, PF_SMEM1, st>>>(tx, twgu, tact_st, act, fg, H, I, tiles1);
    }
    LAUNCH_TRY();
    pf_down_kernel<<<tiles2 < sms ? tiles2 : sms, PF_THREADS, PF_SMEM2, st>>>(tact, twd, ty_st, a->y, fg, H, I, tiles2);
    LAUNCH_TRY();
    return 0;
}

extern "C" int jk_moe_prefill_path(const jk_moe_prefill_args *a) {
    int active = 0;
    for (int e = 0; e < a->E; e++) active += a->h_seg[e + 1] > a->h_seg[e];
    int mode = a->mode;
    if (mode == JK_PREFILL_AUTO || mode == JK_PREFILL_FUSED) {
        // auto: few active experts (Mixtral's 8) make large GEMMs that cuBLAS runs better
        const int aligned =
            (((uintptr_t)a->x | (uintptr_t)a->xb | (uintptr_t)a->y | (uintptr_t)a->w_gu | (uintptr_t)a->w_down) & 15) == 0;
        if ((mode == JK_PREFILL_FUSED || active > JK_PREFILL_GROUPED_MIN) && active <= JK_PREFILL_MAX_GROUPS && aligned &&
            jk_moe_prefill_fused_available())
            return JK_PREFILL_FUSED;
        mode = active > JK_PREFILL_GROUPED_MIN ? JK_PREFILL_GROUPED : JK_PREFILL_LOOP;
    }
    return active > JK_PREFILL_MAX_GROUPS ? JK_PREFILL_LOOP : mode;
}

extern "C" int jk_moe_ffn_prefill(const jk_moe_prefill_args *a, void *cublas_handle, void *stream) {
    const int E = a->E, H = a->H, I = a->I;
    const int R = a->h_seg[E];
    if (R <= 0) return 0;
    if (H % 8 || I % 8) return (int)cudaErrorInvalidValue;
    const ws_layout l = layout(R, H, I);
    if (!a->ws || a->ws_bytes < l.total) return (int)cudaErrorInvalidValue;
    cudaStream_t st = ST(stream);
    char *ws = (char *)a->ws;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)(ws + l.xb), *gu = (__nv_bfloat16 *)(ws + l.gu),
                  *act = (__nv_bfloat16 *)(ws + l.act);
    const __nv_bfloat16 *w_gu = (const __nv_bfloat16 *)a->w_gu, *w_down = (const __nv_bfloat16 *)a->w_down;

    const int mode = jk_moe_prefill_path(a);
    if (mode == JK_PREFILL_FUSED) return fused_run(a, act, st);
    cublasHandle_t hb = (cublasHandle_t)cublas_handle;
    BLAS_TRY(cublasSetStream(hb, st));

    const size_t nx8 = (size_t)R * H / 8, na8 = (size_t)R * I / 8;
    // GEMM 1's bf16 rows: the caller's, or x rounded into ws (whose region then holds yb)
    const __nv_bfloat16 *xin = (const __nv_bfloat16 *)a->xb;
    if (!xin) {
        f32_to_bf16_x8_kernel<<<grid_for(nx8), 256, 0, st>>>((uint4 *)xb, (const float4 *)a->x, nx8);
        LAUNCH_TRY();
        xin = xb;
    }
    const float one = 1.0f, zero = 0.0f;

    if (mode == JK_PREFILL_LOOP) {
        for (int e = 0; e < E; e++) {
            const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
            if (n <= 0) continue;
            BLAS_TRY(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, 2 * I, n, H, &one, w_gu + (size_t)e * 2 * I * H, CUDA_R_16BF, H,
                                  xin + (size_t)r0 * H, CUDA_R_16BF, H, &zero, gu + (size_t)r0 * 2 * I, CUDA_R_16BF, 2 * I,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
        swiglu_bf16_kernel<<<grid_for(na8), 256, 0, st>>>((uint4 *)act, (const uint4 *)gu, I / 8, na8);
        LAUNCH_TRY();
        for (int e = 0; e < E; e++) {
            const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
            if (n <= 0) continue;
            BLAS_TRY(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, H, n, I, &one, w_down + (size_t)e * H * I, CUDA_R_16BF, I,
                                  act + (size_t)r0 * I, CUDA_R_16BF, I, &zero, a->y + (size_t)r0 * H, CUDA_R_32F, H,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
        return 0;
    }

    // Grouped: one group per active expert (each has its own row count n).
    group_list gl;
    int m1[JK_PREFILL_MAX_GROUPS], m2[JK_PREFILL_MAX_GROUPS], nn[JK_PREFILL_MAX_GROUPS], k1[JK_PREFILL_MAX_GROUPS],
        k2[JK_PREFILL_MAX_GROUPS], ld_h[JK_PREFILL_MAX_GROUPS], ld_i[JK_PREFILL_MAX_GROUPS], ld_2i[JK_PREFILL_MAX_GROUPS],
        gsize[JK_PREFILL_MAX_GROUPS];
    float alpha[JK_PREFILL_MAX_GROUPS], beta[JK_PREFILL_MAX_GROUPS];
    cublasOperation_t opT[JK_PREFILL_MAX_GROUPS], opN[JK_PREFILL_MAX_GROUPS];
    gl.n = 0;
    for (int e = 0; e < E; e++) {
        const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
        if (n <= 0) continue;
        const int i = gl.n++;
        gl.e[i] = e, gl.r0[i] = r0;
        m1[i] = 2 * I, m2[i] = H, nn[i] = n, k1[i] = H, k2[i] = I;
        ld_h[i] = H, ld_i[i] = I, ld_2i[i] = 2 * I, gsize[i] = 1;
        alpha[i] = 1.0f, beta[i] = 0.0f, opT[i] = CUBLAS_OP_T, opN[i] = CUBLAS_OP_N;
    }
    const void **p = (const void **)(ws + l.ptrs);
    const int M = JK_PREFILL_MAX_GROUPS;
    prefill_ptrs_kernel<<<(gl.n + 127) / 128, 128, 0, st>>>(p, gl, w_gu, w_down, xin, xb, gu, act, H, I);
    LAUNCH_TRY();
    BLAS_TRY(cublasGemmGroupedBatchedEx(hb, opT, opN, m1, nn, k1, alpha, p + 0 * M, CUDA_R_16BF, ld_h, p + 1 * M, CUDA_R_16BF,
                                        ld_h, beta, (void *const *)(p + 2 * M), CUDA_R_16BF, ld_2i, gl.n, gsize,
                                        CUBLAS_COMPUTE_32F));
    swiglu_bf16_kernel<<<grid_for(na8), 256, 0, st>>>((uint4 *)act, (const uint4 *)gu, I / 8, na8);
    LAUNCH_TRY();
    BLAS_TRY(cublasGemmGroupedBatchedEx(hb, opT, opN, m2, nn, k2, alpha, p + 3 * M, CUDA_R_16BF, ld_i, p + 4 * M, CUDA_R_16BF,
                                        ld_i, beta, (void *const *)(p + 5 * M), CUDA_R_16BF, ld_h, gl.n, gsize,
                                        CUBLAS_COMPUTE_32F));
    bf16_to_f32_x8_kernel<<<grid_for(nx8), 256, 0, st>>>((float4 *)a->y, (const uint4 *)xb, nx8);
    LAUNCH_TRY();
    return 0;
}
