// cli/bench_exchange.c: `janus bench exchange`: point-to-point latency and
// bandwidth of each payload transport of the exchange (OSU style: a message
// size sweep from 8 B to many MiB, warm-up, min/avg/max over rank pairs), the
// data checked on arrival (#wrong), an alpha-beta fit, and optionally the fit
// written into a planner calibration file.
//
// Ranks pair up (0-1, 2-3, ...; an odd last rank idles) and ping-pong
// concurrently. Transports:
//   mpi     host buffers through MPI (the CPU backend's payload)
//   staged  (CUDA) GPU buffers through the host: D2H, MPI, H2D (--transport mpi)
//   ipc     (CUDA) GPU to GPU through CUDA IPC, a zero-byte MPI message as the
//           signal (--transport ipc); both ranks of a pair on one node; the
//           copy engines (cudaMemcpy into the IPC-mapped peer buffer)
//   ipc-kernel  the same, the SMs storing into the peer buffer (jk_copy_bytes),
//           as the exchange's routing kernels store rows (jk_xchg_send_rows)
//   nccl    (CUDA + NCCL) ncclSend/ncclRecv on a communicator of all ranks
//           (--transport nccl); one GPU per rank
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#ifdef JANUS_CUDA
#include <cuda_runtime_api.h>

#include "util.h"
#endif
#ifdef JANUS_NCCL
#include <nccl.h>
#endif

static const char *HELP =
    "usage: mpirun -np 2 janus bench exchange [--transport LIST] [--max-bytes N] [--iters N]\n"
    "                                         [--json FILE] [--calibration FILE] [--link intra|inter]\n"
    "\n"
    "exchange: one-way latency (half a ping-pong) and bandwidth of the exchange's payload\n"
    "transports for message sizes 8 B .. --max-bytes (default 64 MiB), ranks in pairs\n"
    "(0-1, 2-3, ...) concurrently; min/avg/max over the pairs; every message checked on\n"
    "arrival (#wrong). Transports (comma-separated, default all this build and machine\n"
    "have): mpi (host memory), staged (GPU memory through the host), ipc (GPU to GPU\n"
    "through CUDA IPC by the copy engines; the pair on one node), ipc-kernel (the same,\n"
    "the SMs storing into the peer's memory), nccl (ncclSend/ncclRecv; one GPU per rank).\n"
    "The first lines say which GPU each rank took and whether it has peer access to its\n"
    "partner's (without it CUDA IPC copies go through host memory).\n"
    "\n"
    "  --iters N          timed round trips per size (default 200; 50 from 4 MiB up), after\n"
    "                     3 untimed; then one more, untimed, whose bytes are checked\n"
    "  --json FILE        the table as JSON\n"
    "  --calibration FILE latency = alpha + bytes / beta (alpha: the 8-byte latency, beta:\n"
    "                     the largest message) of the transport janus uses for that link\n"
    "                     class, the first measured of: intra ipc-kernel, ipc, nccl, staged,\n"
    "                     mpi; inter nccl, staged, mpi;\n"
    "                     write LINK_alpha_s, LINK_Bps into FILE (created, or updated\n"
    "                     when it exists: a file of janus bench decode --calibration)\n"
    "  --link L           which link class the pairs cross: intra (default: one node,\n"
    "                     NVLink/PCIe or shared memory) or inter (the network)\n";

enum { T_MPI, T_STAGED, T_IPC, T_IPCK, T_NCCL, NT };
static const char *TNAME[NT] = {"mpi", "staged", "ipc", "ipc-kernel", "nccl"};
// Which fit --calibration writes: the transport janus's exchange uses on that
// link (one node: CUDA IPC, whose decode steps store rows from kernels).
static const int FIT_INTRA[NT] = {T_IPCK, T_IPC, T_NCCL, T_STAGED, T_MPI};
static const int FIT_INTER[NT] = {T_NCCL, T_STAGED, T_MPI, -1, -1};

typedef struct {
    int rank, size, peer;   // peer < 0: idle
    size_t max_bytes;
    int iters;
    char *h_buf, *h_chk;    // host buffers
    char *d_buf, *d_peer;   // device buffer, the peer's (IPC-mapped)
    void *st;               // cudaStream_t: ipc-kernel and nccl
    void *nccl;             // ncclComm_t of all ranks
} bx;

static uint8_t pattern(size_t i, int from, int it) { return (uint8_t)(i * 131u + (unsigned)from * 7u + (unsigned)it * 13u); }

static void fill(char *b, size_t n, int from, int it) {
    for (size_t i = 0; i < n; i++) b[i] = (char)pattern(i, from, it);
}
static int64_t check(const char *b, size_t n, int from, int it) {
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += (uint8_t)b[i] != pattern(i, from, it);
    return bad;
}

#ifdef JANUS_CUDA
#define CKX(x)                                                                                              \
    do {                                                                                                    \
        cudaError_t rc_ = (x);                                                                              \
        if (rc_ != cudaSuccess) janus_die(NULL, "bench exchange: %s: %s", #x, cudaGetErrorString(rc_));     \
    } while (0)
#endif

#ifdef JANUS_CUDA
// The checked pattern into the GPU buffer. Synchronised: a cudaMemcpy from
// pageable memory may return before its DMA lands, and the ipc-kernel and nccl
// transports read the buffer on a non-blocking stream, which does not wait for
// the legacy default stream (the first run saw stale bytes at 512 KiB-2 MiB).
static void put_pattern(bx *b, size_t n, int from, int it) {
    fill(b->h_buf, n, from, it);
    CKX(cudaMemcpy(b->d_buf, b->h_buf, n, cudaMemcpyHostToDevice));
    CKX(cudaDeviceSynchronize());
}
#endif

// One message of n bytes from `from` to the other rank of the pair, by
// transport t, iteration it (the payload is a function of both, checked).
static int64_t send_or_recv(bx *b, int t, size_t n, int from, int it, bool verify) {
    const bool me = b->rank == from;
    int64_t bad = 0;
    if (t == T_MPI) {
        if (me) {
            if (verify) fill(b->h_buf, n, from, it);
            MPI_Send(b->h_buf, (int)n, MPI_BYTE, b->peer, 1, MPI_COMM_WORLD);
        } else {
            MPI_Recv(b->h_chk, (int)n, MPI_BYTE, b->peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (verify) bad = check(b->h_chk, n, from, it);
        }
        return bad;
    }
#ifdef JANUS_CUDA
    if (t == T_STAGED) {
        if (me) {
            if (verify) {
                put_pattern(b, n, from, it);
            }
            CKX(cudaMemcpy(b->h_buf, b->d_buf, n, cudaMemcpyDeviceToHost));
            MPI_Send(b->h_buf, (int)n, MPI_BYTE, b->peer, 1, MPI_COMM_WORLD);
        } else {
            MPI_Recv(b->h_chk, (int)n, MPI_BYTE, b->peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            CKX(cudaMemcpy(b->d_buf, b->h_chk, n, cudaMemcpyHostToDevice));
            if (verify) {
                CKX(cudaMemcpy(b->h_chk, b->d_buf, n, cudaMemcpyDeviceToHost));
                bad = check(b->h_chk, n, from, it);
            }
        }
        return bad;
    }
    if (t == T_IPC || t == T_IPCK) {
        if (me) {
            if (verify) {
                put_pattern(b, n, from, it);
            }
            // into the peer's buffer; its second half, so the two directions never overlap
            if (t == T_IPC) {
                CKX(cudaMemcpy(b->d_peer + b->max_bytes, b->d_buf, n, cudaMemcpyDefault));
                CKX(cudaDeviceSynchronize()); // a device-to-device cudaMemcpy may return before the copy is done
            } else {
                CKX((cudaError_t)jk_copy_bytes(b->d_peer + b->max_bytes, b->d_buf, n, b->st));
                CKX(cudaStreamSynchronize((cudaStream_t)b->st));
            }
            MPI_Send(NULL, 0, MPI_BYTE, b->peer, 2, MPI_COMM_WORLD);
        } else {
            MPI_Recv(NULL, 0, MPI_BYTE, b->peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (verify) {
                CKX(cudaMemcpy(b->h_chk, b->d_buf + b->max_bytes, n, cudaMemcpyDeviceToHost));
                bad = check(b->h_chk, n, from, it);
            }
        }
        return bad;
    }
#endif
#ifdef JANUS_NCCL
    if (t == T_NCCL) {
        ncclResult_t rc;
        if (me) {
            if (verify) {
                put_pattern(b, n, from, it);
            }
            rc = ncclSend(b->d_buf, n, ncclChar, b->peer, (ncclComm_t)b->nccl, (cudaStream_t)b->st);
        } else {
            rc = ncclRecv(b->d_buf + b->max_bytes, n, ncclChar, b->peer, (ncclComm_t)b->nccl, (cudaStream_t)b->st);
        }
        if (rc != ncclSuccess) janus_die(NULL, "bench exchange: NCCL: %s", ncclGetErrorString(rc));
        CKX(cudaStreamSynchronize((cudaStream_t)b->st));
        if (!me && verify) {
            CKX(cudaMemcpy(b->h_chk, b->d_buf + b->max_bytes, n, cudaMemcpyDeviceToHost));
            bad = check(b->h_chk, n, from, it);
        }
        return bad;
    }
#endif
    return 0;
}

// The transports named in LIST (comma-separated); dies on an unknown name.
static void parse_transports(const char *list, bool *want) {
    char *copy = xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int t = 0;
        while (t < NT && strcmp(tok, TNAME[t])) t++;
        if (t == NT) janus_die(NULL, "--transport: \"%s\" is not one of mpi, staged, ipc, ipc-kernel, nccl", tok);
        want[t] = true;
    }
    free(copy);
}

int bench_exchange(int argc, char **argv) {
    size_t max_bytes = (size_t)64 << 20;
    int iters = 0;
    const char *tlist = NULL, *json = NULL, *calib = NULL, *link = "intra";
    static struct option opts[] = {{"transport", required_argument, 0, 't'}, {"max-bytes", required_argument, 0, 'b'},
                                   {"iters", required_argument, 0, 'i'},     {"json", required_argument, 0, 'j'},
                                   {"calibration", required_argument, 0, 'c'}, {"link", required_argument, 0, 'l'},
                                   {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': tlist = optarg; break;
        case 'b': max_bytes = (size_t)cli_int("--max-bytes", optarg, 8, (long)1 << 30); break;
        case 'i': iters = (int)cli_int("--iters", optarg, 1, 1000000); break;
        case 'j': json = optarg; break;
        case 'c': calib = optarg; break;
        case 'l': link = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: janus_die(NULL, "bench exchange: unknown or incomplete option \"%s\" (janus bench exchange --help)", argv[optind - 1]);
        }
    }
    if (strcmp(link, "intra") && strcmp(link, "inter")) janus_die(NULL, "--link: \"%s\" is not intra or inter", link);
    bool want[NT] = {false};
    if (!tlist)
        for (int t = 0; t < NT; t++) want[t] = true;
    else
        parse_transports(tlist, want);
    MPI_Init(NULL, NULL);
    bx b = {0};
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.size);
    janus_set_rank(b.rank, b.size);
    if (b.size < 2) janus_die_all(NULL, "bench exchange: needs at least 2 ranks (mpirun -np 2 janus bench exchange)");
    b.peer = (b.rank ^ 1) < b.size ? (b.rank ^ 1) : -1;
    b.max_bytes = max_bytes;
    b.h_buf = xmalloc(max_bytes), b.h_chk = xmalloc(max_bytes);
    bool have_gpu = false;
#ifdef JANUS_CUDA
    int ndev = 0;
    have_gpu = cudaGetDeviceCount(&ndev) == cudaSuccess && ndev > 0;
    int all_gpu = have_gpu;
    MPI_Allreduce(MPI_IN_PLACE, &all_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    have_gpu = all_gpu;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, b.rank, MPI_INFO_NULL, &node);
    int local_rank, local_size;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    int one_node = local_size == b.size;
    if (have_gpu) {
        CKX(cudaSetDevice(local_rank % ndev));
        CKX(cudaMalloc((void **)&b.d_buf, 2 * max_bytes));
        cudaStream_t st;
        CKX(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        b.st = st;
        // which GPU each rank took, and whether it reaches its partner's by peer access
        int mine[3] = {local_rank % ndev, -1, -1}, *all = b.rank == 0 ? xcalloc(3 * (size_t)b.size, sizeof(int)) : NULL;
        if (b.peer >= 0)
            MPI_Sendrecv(&mine[0], 1, MPI_INT, b.peer, 4, &mine[1], 1, MPI_INT, b.peer, 4, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (b.peer >= 0 && one_node && mine[1] != mine[0]) CKX(cudaDeviceCanAccessPeer(&mine[2], mine[0], mine[1]));
        MPI_Gather(mine, 3, MPI_INT, all, 3, MPI_INT, 0, MPI_COMM_WORLD);
        if (b.rank == 0) {
            for (int r = 0; r < b.size; r++)
                printf("# rank %d: GPU %d%s%s\n", r, all[3 * r],
                       all[3 * r + 1] < 0 ? "" : all[3 * r + 1] == all[3 * r] ? ", its partner's too (shared)" : "",
                       all[3 * r + 1] < 0 || all[3 * r + 1] == all[3 * r] ? ""
                       : all[3 * r + 2] > 0                             ? ", peer access to its partner's GPU: yes"
                       : all[3 * r + 2] == 0                            ? ", peer access to its partner's GPU: NO"
                                                                        : ", partner on another node");
            free(all);
        }
        if ((want[T_IPC] || want[T_IPCK]) && one_node) {
            cudaIpcMemHandle_t mine, theirs;
            CKX(cudaIpcGetMemHandle(&mine, b.d_buf));
            if (b.peer >= 0)
                MPI_Sendrecv(&mine, sizeof mine, MPI_BYTE, b.peer, 3, &theirs, sizeof theirs, MPI_BYTE, b.peer, 3,
                             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (b.peer >= 0) CKX(cudaIpcOpenMemHandle((void **)&b.d_peer, theirs, cudaIpcMemLazyEnablePeerAccess));
        }
    }
    if (!one_node) want[T_IPC] = want[T_IPCK] = false;
#endif
#ifdef JANUS_NCCL
    if (have_gpu && want[T_NCCL]) {
        // NCCL refuses two ranks of one communicator on one GPU
        int ok = local_size <= ndev;
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (!ok) {
            if (b.rank == 0) printf("# nccl: left out, ranks share a GPU (NCCL needs one GPU per rank)\n");
            want[T_NCCL] = false;
        } else {
            ncclUniqueId id;
            if (b.rank == 0 && ncclGetUniqueId(&id) != ncclSuccess) janus_die(NULL, "bench exchange: ncclGetUniqueId failed");
            MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
            ncclComm_t comm;
            ncclResult_t rc = ncclCommInitRank(&comm, b.size, id, b.rank);
            if (rc != ncclSuccess) janus_die(NULL, "bench exchange: ncclCommInitRank: %s", ncclGetErrorString(rc));
            b.nccl = comm;
        }
    }
#else
    want[T_NCCL] = false;
#endif
    if (!have_gpu) want[T_STAGED] = want[T_IPC] = want[T_IPCK] = want[T_NCCL] = false;
    if (b.rank == 0) {
        printf("# janus bench exchange: %d ranks in %d pairs, one-way latency = half a round trip; ", b.size, b.size / 2);
        printf("transports:");
        for (int t = 0; t < NT; t++)
            if (want[t]) printf(" %s", TNAME[t]);
        printf("\n# %-7s %12s %7s %11s %11s %11s %10s %8s\n", "xport", "bytes", "iters", "min_us", "avg_us", "max_us",
               "GB/s(avg)", "#wrong");
    }
    FILE *jf = NULL;
    if (json && b.rank == 0) {
        jf = fopen(json, "w");
        if (!jf) janus_die(json, "cannot write: %s", strerror(errno));
        fprintf(jf, "{\"bench\": \"exchange\", \"ranks\": %d, \"rows\": [", b.size);
    }
    int first = 1;
    int64_t wrong_total = 0;
    double fit_alpha[NT] = {0}, fit_beta[NT] = {0};
    bool fitted[NT] = {false};
    for (int t = 0; t < NT; t++) {
        if (!want[t]) continue;
        // alpha: the smallest message's latency; beta: the largest's bytes over
        // its latency beyond alpha (a least-squares line is ruled by the big
        // messages and can give a negative alpha)
        double a_us = -1, last_us = 0, last_n = 0;
        int np = 0;
        for (size_t n = 8; n <= max_bytes; n *= 4) {
            int it_n = iters ? iters : n < ((size_t)4 << 20) ? 200 : 50;
            int64_t bad = 0;
            for (int w = 0; w < 3 && b.peer >= 0; w++) { // warm-up
                send_or_recv(&b, t, n, b.rank & ~1, w, false);
                send_or_recv(&b, t, n, b.rank | 1, w, false);
            }
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = janus_now_s();
            for (int k = 0; k < it_n && b.peer >= 0; k++) {
                send_or_recv(&b, t, n, b.rank & ~1, k, false);
                send_or_recv(&b, t, n, b.rank | 1, k, false);
            }
            double us = b.peer >= 0 ? (janus_now_s() - t0) / it_n / 2 * 1e6 : 0;
            // then one round trip carrying a checked pattern, untimed: filling
            // and checking bytes on the host costs more than moving them
            if (b.peer >= 0) {
                bad += send_or_recv(&b, t, n, b.rank & ~1, it_n, true);
                bad += send_or_recv(&b, t, n, b.rank | 1, it_n, true);
            }
            double mn = us, mx = us, sum = us;
            int active = b.peer >= 0, n_active;
            double mn_in = b.peer >= 0 ? us : 1e30;
            MPI_Reduce(&mn_in, &mn, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
            MPI_Reduce(&us, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            MPI_Reduce(&us, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
            MPI_Reduce(&active, &n_active, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
            int64_t bad_all = 0;
            MPI_Reduce(&bad, &bad_all, 1, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
            if (b.rank == 0) {
                double avg = sum / (n_active ? n_active : 1);
                printf("  %-7s %12zu %7d %11.2f %11.2f %11.2f %10.2f %8lld\n", TNAME[t], n, it_n, mn, avg, mx,
                       n / (avg * 1e-6) / 1e9, (long long)bad_all);
                if (jf)
                    fprintf(jf, "%s\n  {\"transport\": \"%s\", \"bytes\": %zu, \"iters\": %d, \"min_us\": %.3f, \"avg_us\": %.3f, "
                                "\"max_us\": %.3f, \"GBps\": %.3f, \"wrong\": %lld}",
                            first ? "" : ",", TNAME[t], n, it_n, mn, avg, mx, n / (avg * 1e-6) / 1e9, (long long)bad_all);
                first = 0;
                wrong_total += bad_all;
                if (a_us < 0) a_us = avg;
                last_us = avg, last_n = (double)n, np++;
            }
        }
        if (b.rank == 0 && np >= 2) {
            const double beta = last_us > a_us ? last_n / ((last_us - a_us) * 1e-6) : last_n / (last_us * 1e-6);
            printf("# %s: alpha %.2f us (8 B), beta %.2f GB/s (%.0f B)\n", TNAME[t], a_us, beta / 1e9, last_n);
            fitted[t] = true, fit_alpha[t] = a_us * 1e-6, fit_beta[t] = beta;
        }
    }
    if (jf) fprintf(jf, "\n]}\n"), fclose(jf);
    int fit_t = -1;
    for (int i = 0; i < NT && fit_t < 0; i++) {
        const int t = (strcmp(link, "intra") ? FIT_INTER : FIT_INTRA)[i];
        if (t >= 0 && fitted[t]) fit_t = t;
    }
    const double fit_a = fit_t >= 0 ? fit_alpha[fit_t] : 0, fit_b = fit_t >= 0 ? fit_beta[fit_t] : 0;
    if (calib && b.rank == 0 && fit_t >= 0) {
        json_error_t je;
        json_t *o = json_load_file(calib, 0, &je);
        if (!o) o = json_pack("{s:s}", "base", have_gpu ? "h100" : "cpu");
        char key[64];
        snprintf(key, sizeof key, "%s_alpha_s", link);
        json_object_set_new(o, key, json_real(fit_a > 0 ? fit_a : 0));
        snprintf(key, sizeof key, "%s_Bps", link);
        json_object_set_new(o, key, json_real(fit_b));
        snprintf(key, sizeof key, "%s_measured_by", link);
        char how[128];
        snprintf(how, sizeof how, "janus bench exchange, transport %s, %d ranks", TNAME[fit_t], b.size);
        json_object_set_new(o, key, json_string(how));
        if (json_dump_file(o, calib, JSON_INDENT(2)) != 0) janus_die(calib, "cannot write the calibration file");
        json_decref(o);
        printf("# wrote %s: %s link alpha %.2f us, %.2f GB/s (%s)\n", calib, link, fit_a * 1e6, fit_b / 1e9, TNAME[fit_t]);
    }
#ifdef JANUS_NCCL
    if (b.nccl) ncclCommDestroy((ncclComm_t)b.nccl);
#endif
#ifdef JANUS_CUDA
    if (b.d_peer) cudaIpcCloseMemHandle(b.d_peer);
    if (b.st) cudaStreamDestroy((cudaStream_t)b.st);
    MPI_Barrier(MPI_COMM_WORLD);
    if (b.d_buf) cudaFree(b.d_buf);
#endif
    free(b.h_buf), free(b.h_chk);
    MPI_Bcast(&wrong_total, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    if (wrong_total) janus_die_all(NULL, "bench exchange: %lld bytes arrived wrong", (long long)wrong_total);
    MPI_Finalize();
    return 0;
}
