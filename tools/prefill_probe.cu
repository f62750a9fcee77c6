// tools/prefill_probe.cu: times the two fused prefill expert kernels of
// cuda_kernels/moe_prefill.cu one by one (and the whole call), on Qwen3-30B-A3B
// and Mixtral shapes with uniform random top-k routing. A diagnosis aid beside
// `janus bench kernels --only moe-prefill` (which times whole calls only), and a
// check of each kernel against the cuBLAS loop path (act, y: rel diff, NaN).
// Built here, run on the GPU machine (no L2 eviction between calls):
//   nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -DJK_PREFILL_SM90A=1 -Icuda_kernels \
//        tools/prefill_probe.cu -lcublas -o prefill_probe
//   prefill_probe [case 0..3 | -1 all] [nocheck]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cuda_kernels/moe_prefill.cu"

#define CHK(x)                                                                                      \
    do {                                                                                            \
        int rc_ = (int)(x);                                                                         \
        if (rc_) { fprintf(stderr, "%s:%d: %s: error %d (%s)\n", __FILE__, __LINE__, #x, rc_,       \
                           cudaGetErrorString((cudaError_t)rc_)); exit(1); }                        \
    } while (0)

__global__ void fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        const float v = ((h & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * scale;
        __nv_bfloat16 b = __float2bfloat16(v);
        p[i] = *(uint16_t *)&b;
    }
}
__global__ void fill_f32(float *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        p[i] = (h & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
    }
}

// rel diff of got vs ref, NaN count, first element off by > 5% of rms(ref) (row, col)
static void report(const char *what, const float *got, const float *ref, size_t n, int cols) {
    double num = 0, den = 0;
    long nan = 0, bad = 0, first = -1;
    for (size_t i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    const double rms = sqrt(den / (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        if (got[i] != got[i]) { nan++; if (first < 0) first = (long)i; continue; }
        const double e = (double)got[i] - ref[i];
        num += e * e;
        if (fabs(e) > 0.05 * rms + 0.02 * fabs(ref[i])) { bad++; if (first < 0) first = (long)i; }
    }
    printf("         %-32s rel diff %.2e, NaN %ld, off %ld", what, sqrt(num / (den > 0 ? den : 1)), nan, bad);
    if (first >= 0) printf(", first at row %ld col %ld (got %g ref %g)", first / cols, first % cols, got[first], ref[first]);
    printf("\n");
}

static int cmpf(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    // argv: [case 0..3, -1 all] [nocheck]
    const int iters = 15, only = argc > 1 ? atoi(argv[1]) : -1, check = !(argc > 2 && !strcmp(argv[2], "nocheck"));
    struct { const char *name; int E, k, H, I, T; } cases[] = {
        {"qwen3", 128, 8, 2048, 768, 2048},  {"qwen3", 128, 8, 2048, 768, 8192},
        {"qwen3", 128, 8, 2048, 768, 16384}, {"mixtral", 8, 2, 4096, 14336, 8192},
    };
    int sms = 0;
    CHK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    printf("fused available: %d, %d SMs\n", jk_moe_prefill_fused_available(), sms);
    cublasHandle_t hb;
    cublasCreate(&hb);
    cudaEvent_t ev[4];
    for (int i = 0; i < 4; i++) CHK(cudaEventCreate(&ev[i]));
    printf("stages: gate/up (bf16 x) %d, down %d; y store rounds %d\n", PF_ST_GU, PF_ST_DOWN, PF_YR);
    printf("%-8s %6s %7s | %9s %7s %7s | %9s %7s | %9s %7s %7s | %9s %7s | %9s %7s | %9s %7s\n", "model", "T", "R", "k1 us", "TF/s",
           "GB/s", "k1b us", "TF/s", "k2 us", "TF/s", "GB/s", "fused us", "TF/s", "fusedb us", "TF/s", "loop us", "TF/s");
    uint64_t rng = 7;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        if (only >= 0 && (int)ci != only) continue;
        const int E = cases[ci].E, K = cases[ci].k, H = cases[ci].H, I = cases[ci].I, T = cases[ci].T;
        int32_t *seg = (int32_t *)calloc(E + 1, 4), *cnt = (int32_t *)calloc(E, 4);
        for (int t = 0; t < T; t++) {
            int ch[16], n = 0;
            while (n < K) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                const int e = (int)((rng >> 33) % (uint64_t)E);
                int dup = 0;
                for (int q = 0; q < n; q++) dup |= ch[q] == e;
                if (!dup) ch[n++] = e, cnt[e]++;
            }
        }
        for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + cnt[e];
        const int R = seg[E];
        const size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
        uint16_t *wgu, *wd;
        float *x, *y;
        uint16_t *xb16;
        void *ws;
        const size_t wsb = jk_moe_prefill_ws_bytes(R, H, I);
        CHK(cudaMalloc((void **)&wgu, 2 * ngu));
        CHK(cudaMalloc((void **)&wd, 2 * nd));
        CHK(cudaMalloc((void **)&x, 4 * (size_t)R * H));
        CHK(cudaMalloc((void **)&y, 4 * (size_t)R * H));
        CHK(cudaMalloc((void **)&xb16, 2 * (size_t)R * H));
        CHK(cudaMalloc(&ws, wsb));
        fill_bf16<<<4096, 256>>>(wgu, ngu, 11, 1.0f / sqrtf((float)H));
        fill_bf16<<<4096, 256>>>(wd, nd, 12, 1.0f / sqrtf((float)I));
        fill_f32<<<4096, 256>>>(x, (size_t)R * H, 13);
        f32_to_bf16_x8_kernel<<<4096, 256>>>((uint4 *)xb16, (const float4 *)x, (size_t)R * H / 8);
        CHK(cudaDeviceSynchronize());
        jk_moe_prefill_args a = {x, seg, wgu, wd, y, E, H, I, ws, wsb, JK_PREFILL_FUSED, NULL};
        // the fused call split in its two launches, events between them
        fused_groups fg;
        fg.n = 0;
        fg.rt0[0] = 0;
        for (int e = 0; e < E; e++) {
            const int r0 = seg[e], n = seg[e + 1] - r0;
            if (n <= 0) continue;
            const int i = fg.n++;
            fg.r0[i] = r0, fg.r0[i + 1] = r0 + n, fg.e[i] = (unsigned short)e;
            fg.rt0[i + 1] = fg.rt0[i] + (n + PF_BM - 1) / PF_BM;
        }
        const int tiles1 = fg.rt0[fg.n] * ((I + PF_N1 - 1) / PF_N1), tiles2 = fg.rt0[fg.n] * ((H + PF_N2 - 1) / PF_N2);
        __nv_bfloat16 *act = (__nv_bfloat16 *)((char *)ws + layout(R, H, I).act);
        CUtensorMap tx, twgu, tact, twd, tact_st, ty_st;
        const cuuint64_t dx[2] = {(cuuint64_t)H, (cuuint64_t)R}, px[1] = {(cuuint64_t)H * 4};
        const cuuint32_t bx[2] = {32, PF_BM};
        const cuuint64_t dg[3] = {(cuuint64_t)H, (cuuint64_t)2 * I, (cuuint64_t)E}, pg[2] = {(cuuint64_t)H * 2, (cuuint64_t)2 * I * H * 2};
        const cuuint32_t bg[3] = {PF_BK, PF_N1, 1};
        const cuuint64_t da[2] = {(cuuint64_t)I, (cuuint64_t)R}, pa[1] = {(cuuint64_t)I * 2};
        const cuuint32_t ba[2] = {PF_BK, PF_BM};
        const cuuint64_t dd[3] = {(cuuint64_t)I, (cuuint64_t)H, (cuuint64_t)E}, pd[2] = {(cuuint64_t)I * 2, (cuuint64_t)H * I * 2};
        const cuuint32_t bd[3] = {PF_BK, PF_N2, 1};
        CHK(tmap_make(&tx, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, x, dx, px, bx));
        CUtensorMap txb;
        const cuuint64_t pxb[1] = {(cuuint64_t)H * 2};
        const cuuint32_t bxb[2] = {PF_BK, PF_BM};
        CHK(tmap_make(&txb, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, xb16, dx, pxb, bxb));
        CHK(tmap_make(&twgu, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, wgu, dg, pg, bg));
        CHK(tmap_make(&tact, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, act, da, pa, ba));
        CHK(tmap_make(&twd, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, wd, dd, pd, bd));
        const cuuint32_t bas[2] = {64, 64}, bys[2] = {32, 64};
        const cuuint64_t dy[2] = {(cuuint64_t)H, (cuuint64_t)R}, py[1] = {(cuuint64_t)H * 4};
        CHK(tmap_make(&tact_st, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, act, da, pa, bas));
        CHK(tmap_make(&ty_st, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, y, dy, py, bys));
        CHK(cudaFuncSetAttribute(pf_gate_up_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM1));
        CHK(cudaFuncSetAttribute(pf_down_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM2));
        CHK(cudaFuncSetAttribute(pf_gate_up_ss_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM1B));
        float t1[32], t2[32], tf[32], tl[32], t1b[32], tfb[32];
        for (int it = -2; it < iters; it++) {
            CHK(cudaEventRecord(ev[0]));
            pf_gate_up_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS1, PF_SMEM1>>>(tx, twgu, tact_st, act, fg, H, I, tiles1);
            CHK(cudaGetLastError());
            CHK(cudaEventRecord(ev[1]));
            pf_down_kernel<<<tiles2 < sms ? tiles2 : sms, PF_THREADS, PF_SMEM2>>>(tact, twd, ty_st, y, fg, H, I, tiles2);
            CHK(cudaGetLastError());
            CHK(cudaEventRecord(ev[2]));
            CHK(cudaEventSynchronize(ev[2]));
            if (it >= 0) { CHK(cudaEventElapsedTime(&t1[it], ev[0], ev[1])); CHK(cudaEventElapsedTime(&t2[it], ev[1], ev[2])); }
            CHK(cudaEventRecord(ev[0]));
            pf_gate_up_ss_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS, PF_SMEM1B>>>(txb, twgu, tact_st, act, fg, H, I, tiles1);
            CHK(cudaGetLastError());
            CHK(cudaEventRecord(ev[1]));
            a.mode = JK_PREFILL_FUSED, a.xb = xb16;
            CHK(jk_moe_ffn_prefill(&a, hb, NULL));
            a.xb = NULL;
            CHK(cudaEventRecord(ev[2]));
            CHK(cudaEventSynchronize(ev[2]));
            if (it >= 0) { CHK(cudaEventElapsedTime(&t1b[it], ev[0], ev[1])); CHK(cudaEventElapsedTime(&tfb[it], ev[1], ev[2])); }
            CHK(cudaEventRecord(ev[0]));
            a.mode = JK_PREFILL_FUSED;
            CHK(jk_moe_ffn_prefill(&a, hb, NULL));
            CHK(cudaEventRecord(ev[1]));
            a.mode = JK_PREFILL_LOOP;
            CHK(jk_moe_ffn_prefill(&a, hb, NULL));
            CHK(cudaEventRecord(ev[2]));
            CHK(cudaEventSynchronize(ev[2]));
            if (it >= 0) { CHK(cudaEventElapsedTime(&tf[it], ev[0], ev[1])); CHK(cudaEventElapsedTime(&tl[it], ev[1], ev[2])); }
        }
        qsort(t1, iters, 4, cmpf), qsort(t2, iters, 4, cmpf), qsort(tf, iters, 4, cmpf), qsort(tl, iters, 4, cmpf);
        qsort(t1b, iters, 4, cmpf), qsort(tfb, iters, 4, cmpf);
        const double m1 = t1[iters / 2] * 1e3, m2 = t2[iters / 2] * 1e3, mf = tf[iters / 2] * 1e3, ml = tl[iters / 2] * 1e3;
        const double m1b = t1b[iters / 2] * 1e3, mfb = tfb[iters / 2] * 1e3;
        const double f1 = 4.0 * R * H * I, f2 = 2.0 * R * H * I;
        const double b1 = 4.0 * R * H + 2.0 * R * I + 2.0 * E * 2 * I * H, b2 = 2.0 * R * I + 4.0 * R * H + 2.0 * E * H * I;
        printf("%-8s %6d %7d | %9.1f %7.1f %7.0f | %9.1f %7.1f | %9.1f %7.1f %7.0f | %9.1f %7.1f | %9.1f %7.1f | %9.1f %7.1f\n",
               cases[ci].name, T, R, m1, f1 / m1 * 1e-6, b1 / m1 * 1e-3, m1b, f1 / m1b * 1e-6, m2, f2 / m2 * 1e-6,
               b2 / m2 * 1e-3, mf, (f1 + f2) / mf * 1e-6, mfb, (f1 + f2) / mfb * 1e-6, ml, (f1 + f2) / ml * 1e-6);
        if (!check) {
            free(seg), free(cnt);
            cudaFree(wgu), cudaFree(wd), cudaFree(x), cudaFree(xb16), cudaFree(y), cudaFree(ws);
            continue;
        }
        // checks against the cuBLAS loop path: kernel 2 alone on the loop's act,
        // kernel 1 alone (act), the whole fused call (y)
        const size_t ny = (size_t)R * H, na = (size_t)R * I;
        float *hy = (float *)malloc(4 * ny), *hl = (float *)malloc(4 * ny);
        uint16_t *hal = (uint16_t *)malloc(2 * na), *haf = (uint16_t *)malloc(2 * na);
        a.mode = JK_PREFILL_LOOP;
        CHK(jk_moe_ffn_prefill(&a, hb, NULL));
        CHK(cudaDeviceSynchronize());
        CHK(cudaMemcpy(hl, y, 4 * ny, cudaMemcpyDeviceToHost));
        CHK(cudaMemcpy(hal, act, 2 * na, cudaMemcpyDeviceToHost));
        CHK(cudaMemset(y, 0xff, 4 * ny));
        pf_down_kernel<<<tiles2 < sms ? tiles2 : sms, PF_THREADS, PF_SMEM2>>>(tact, twd, ty_st, y, fg, H, I, tiles2);
        CHK(cudaDeviceSynchronize());
        CHK(cudaMemcpy(hy, y, 4 * ny, cudaMemcpyDeviceToHost));
        report("k2 alone (loop act) vs loop y", hy, hl, ny, H);
        CHK(cudaMemset(act, 0xff, 2 * na));
        pf_gate_up_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS1, PF_SMEM1>>>(tx, twgu, tact_st, act, fg, H, I, tiles1);
        CHK(cudaDeviceSynchronize());
        CHK(cudaMemcpy(haf, act, 2 * na, cudaMemcpyDeviceToHost));
        {
            float *fa = (float *)malloc(4 * na), *fl = (float *)malloc(4 * na);
            for (size_t i = 0; i < na; i++) {
                const uint32_t uf = (uint32_t)haf[i] << 16, ul = (uint32_t)hal[i] << 16;
                memcpy(&fa[i], &uf, 4), memcpy(&fl[i], &ul, 4);
            }
            report("k1 alone act vs loop act", fa, fl, na, I);
            CHK(cudaMemset(act, 0xff, 2 * na));
            pf_gate_up_ss_kernel<<<tiles1 < sms ? tiles1 : sms, PF_THREADS, PF_SMEM1B>>>(txb, twgu, tact_st, act, fg, H, I, tiles1);
            CHK(cudaDeviceSynchronize());
            CHK(cudaMemcpy(haf, act, 2 * na, cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < na; i++) {
                const uint32_t uf = (uint32_t)haf[i] << 16;
                memcpy(&fa[i], &uf, 4);
            }
            report("k1b alone (bf16 x) act vs loop act", fa, fl, na, I);
            free(fa), free(fl);
        }
        CHK(cudaMemset(y, 0xff, 4 * ny));
        a.mode = JK_PREFILL_FUSED;
        CHK(jk_moe_ffn_prefill(&a, hb, NULL));
        CHK(cudaDeviceSynchronize());
        CHK(cudaMemcpy(hy, y, 4 * ny, cudaMemcpyDeviceToHost));
        report("fused y vs loop y", hy, hl, ny, H);
        CHK(cudaMemset(y, 0xff, 4 * ny));
        a.xb = xb16;
        CHK(jk_moe_ffn_prefill(&a, hb, NULL));
        a.xb = NULL;
        CHK(cudaDeviceSynchronize());
        CHK(cudaMemcpy(hy, y, 4 * ny, cudaMemcpyDeviceToHost));
        report("fused (bf16 x) y vs loop y", hy, hl, ny, H);
        free(hal), free(haf);
        free(hy), free(hl), free(seg), free(cnt);
        cudaFree(wgu), cudaFree(wd), cudaFree(x), cudaFree(xb16), cudaFree(y), cudaFree(ws);
    }
    return 0;
}
