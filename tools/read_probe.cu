// tools/read_probe.cu: how fast can one kernel read N bytes from HBM, for the
// sizes the decode expert FFN streams (one Qwen3 token: 50 MB of gate/up and
// 25 MB of down weights)? The roofline of a small streaming kernel is not the
// large-copy bandwidth: a launch has to ramp up and drain. Build and run on
// the GPU machine:
//   nvcc -O3 -arch=sm_90 -o /tmp/read_probe tools/read_probe.cu && /tmp/read_probe
// Prints, per size (MiB, labelled MB), the best time over launch shapes of the
// plain read kernel of cuda_kernels/util.cu (jk_read_probe's; 16-byte loads, U
// independent loads in flight per thread, B blocks per SM),
// L2 evicted before each call, median of 20.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "../cuda_kernels/util.cu" // read_probe_kernel<U> (the kernel behind jk_read_probe)

#define CK(x)                                                                          \
    do {                                                                               \
        cudaError_t e_ = (x);                                                          \
        if (e_ != cudaSuccess) {                                                       \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                   \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static int cmpf(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(void) {
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t maxb = (size_t)800 << 20, flushb = (size_t)256 << 20;
    void *buf, *flush, *dst;
    unsigned *out;
    CK(cudaMalloc(&buf, maxb));
    CK(cudaMalloc(&dst, maxb));
    CK(cudaMalloc(&flush, flushb));
    CK(cudaMalloc((void **)&out, 4));
    CK(cudaMemset(buf, 1, maxb));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const double mb[] = {12.5, 25, 50, 75, 100, 200, 800};
    printf("%10s %10s %10s %8s %12s %10s\n", "MB", "best us", "GB/s", "shape", "copy us", "copy GB/s");
    for (size_t si = 0; si < sizeof mb / sizeof mb[0]; si++) {
        const size_t bytes = (size_t)(mb[si] * (1 << 20)) & ~(size_t)15;
        float best = 1e30f;
        int bu = 0, bb = 0;
        for (int u = 4; u <= 16; u *= 2)
            for (int bps = 1; bps <= 8; bps *= 2) {
                float t[20];
                for (int it = -2; it < 20; it++) {
                    CK(cudaMemsetAsync(flush, it & 0xff, flushb, 0));
                    CK(cudaEventRecord(e0, 0));
                    const unsigned grid = (unsigned)(sms * bps);
                    if (u == 4) read_probe_kernel<4><<<grid, 256>>>((const uint4 *)buf, bytes / 16, out);
                    else if (u == 8) read_probe_kernel<8><<<grid, 256>>>((const uint4 *)buf, bytes / 16, out);
                    else read_probe_kernel<16><<<grid, 256>>>((const uint4 *)buf, bytes / 16, out);
                    CK(cudaEventRecord(e1, 0));
                    CK(cudaEventSynchronize(e1));
                    if (it >= 0) CK(cudaEventElapsedTime(&t[it], e0, e1));
                }
                qsort(t, 20, sizeof(float), cmpf);
                if (t[10] < best) best = t[10], bu = u, bb = bps;
            }
        float tc[20];
        for (int it = -2; it < 20; it++) { // device-to-device copy of the same bytes (read + write)
            CK(cudaMemsetAsync(flush, it & 0xff, flushb, 0));
            CK(cudaEventRecord(e0, 0));
            CK(cudaMemcpyAsync(dst, buf, bytes, cudaMemcpyDeviceToDevice, 0));
            CK(cudaEventRecord(e1, 0));
            CK(cudaEventSynchronize(e1));
            if (it >= 0) CK(cudaEventElapsedTime(&tc[it], e0, e1));
        }
        qsort(tc, 20, sizeof(float), cmpf);
        char shape[32];
        snprintf(shape, sizeof shape, "U%d B%d", bu, bb);
        printf("%10.1f %10.1f %10.0f %8s %12.1f %10.0f\n", mb[si], 1e3 * best, bytes / (best * 1e-3) / 1e9, shape,
               1e3 * tc[10], 2.0 * bytes / (tc[10] * 1e-3) / 1e9);
    }
    return 0;
}
