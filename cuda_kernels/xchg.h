// cuda_kernels/xchg.h: C launch API of the exchange's device-side routing
// (cuda_kernels/xchg.cu): from the handshake counts and the schedule
// (jk_sched, sched_gpu.h), both in device memory, every rank derives on its
// own GPU where each pair's row goes, and the rows move GPU to GPU with no
// host round trip (comm/ipc.c, JANUS_XCHG_SCHED=gpu). The layouts are those
// of the host code (comm/exchange.c), so either path serves either:
//
//   seg[a, s]  rows of attention rank a that replica slot s serves: expert e's
//              rows form one stream ordered by attention rank, and its slots
//              take share[s] consecutive rows of it, in slot order;
//   MoE rank m's receive buffer: for a ascending, a's rows for m, in expert
//              order then pair order (pair q = token q / k, slot q % k);
//   attention rank a's return buffer: for m ascending, the same rows of a for
//              m, in the same order (the MoE rank writes each output there);
//   the MoE rank's grouped rows: for its slots in expert order, for a
//              ascending, a's rows of that slot (what its experts run over).
//
// tests/test_cuda_xchg.c checks the tables against a C reference.
#ifndef JANUS_CUDA_XCHG_H
#define JANUS_CUDA_XCHG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// One (layer, micro-batch) of one rank. Every pointer is device memory.
typedef struct {
    int E, S, A, M, K;                // experts, replica slots, attention ranks, MoE ranks, top-k
    int ai, mi;                       // this rank's attention / MoE index, -1: not in that pool
    // The placement (the scheduler plan's tables, jk_sched_plan).
    const int32_t *rep_off, *rep_rank; // [E+1], [S]: replica slots of each expert, their ranks
    const int32_t *rs_off, *rs_slot;   // [M+1], [S]: slots of each rank, ascending
    // The handshake and the schedule.
    const int32_t *cnt;               // [A, E] pairs of each attention rank per expert
    const int64_t *share;             // [S] pairs each slot serves (jk_sched)
    // Attention side (ai >= 0): this rank's P pairs.
    const int32_t *ids;               // [P] expert of each pair
    int P;
    int32_t *dst_m, *dst_row;         // [P] out: MoE rank of each pair, its row in that rank's receive buffer
    int32_t *ret_row;                 // [P] out: the row of its output in this rank's return buffer
    // MoE side (mi >= 0).
    const int32_t *lseg_k;            // [n_loc+1]: this rank's slots whose expert's local index is < j
    int n_loc;                        // experts this GPU holds (local indices ascend with the expert)
    int32_t *lseg;                    // [n_loc+1] out: grouped rows of local expert j: lseg[j] .. lseg[j+1]
    int32_t *perm;                    // [rows] out: grouped row -> row in the receive buffer
    int32_t *out_a, *out_row;         // [rows] out: attention rank of each grouped row, row in its return buffer
    int32_t *n_rows;                  // [1] out: rows this rank serves
    int64_t *served;                  // [1] += n_rows (statistics)
    void *ws;                         // scratch of jk_xchg_ws_bytes
} jk_xchg_route_args;

// Scratch bytes of jk_xchg_route; 0 when E is too large for its shared memory.
size_t jk_xchg_ws_bytes(int E, int S, int A, int M);
// The routing tables above, one thread block. Returns 0 or a CUDA error code.
int jk_xchg_route(const jk_xchg_route_args *a, void *stream);

// Attention side: pair q's row x[q / K] ([T, H]) to peer[dst_m[q]] (a device
// array of M row buffers [.., H], IPC-mapped) at row base + dst_row[q], q < P.
int jk_xchg_send_rows(float *const *peer, size_t base, const float *x, const int32_t *dst_m, const int32_t *dst_row,
                      int K, int P, int H, void *stream);
// MoE side: dst[g] = src[idx[g]] for g < *n (device count; n_max bounds it).
int jk_xchg_gather_rows(float *dst, const float *src, const int32_t *idx, const int32_t *n, int n_max, int H,
                        void *stream);
// MoE side: output row g of y to peer[out_a[g]] at row base + out_row[g], g < *n.
int jk_xchg_return_rows(float *const *peer, size_t base, const float *y, const int32_t *out_a, const int32_t *out_row,
                        const int32_t *n, int n_max, int H, void *stream);

// Decode rows once per (token, MoE rank) instead of once per pair (the
// forward half of a deduplicated payload; jk_xchg_return_sums is the return
// half). From the routing's dst_m / dst_row of this rank's P = T * K pairs
// (pair q = token q / K): tok_dst[t * M + m] = the row of token t in MoE rank
// m's receive buffer, or -1 where none of t's pairs go to m. The rows of this
// rank for m keep their region of m's receive buffer (its pairs there are
// contiguous), its distinct tokens first, in token order. A block per MoE
// rank; ws: jk_xchg_dedup_ws_bytes.
// rows_out (optional): += the rows sent (statistics).
size_t jk_xchg_dedup_ws_bytes(int T, int M);
int jk_xchg_dedup(const int32_t *dst_m, const int32_t *dst_row, int T, int K, int M, int32_t *tok_dst,
                  int64_t *rows_out, void *ws, void *stream);
// Token t's row x[t] ([T, H]) to peer[m] at row base + tok_dst[t * M + m]
// where that is >= 0, and pair q's token row (tok_dst of q's token and MoE
// rank) to peer_idx[dst_m[q]] at base + dst_row[q] (where the MoE rank looks
// for pair q's row).
// Outputs summed on the MoE ranks (peer_hdr non-NULL; K <= JK_XCHG_SUM_MAX_K):
// each token row also gets a header in peer_hdr[m] at base + its row (2K
// int32: the receive rows of the token's pairs on m in ascending expert id
// ids, -1 after them, then their weights w as float bits), and lead[q] = 1
// for the pair of lowest expert id among its token's pairs on its MoE rank,
// 0 for the others (the attention side's combine, jk_combine_add's lead).
#define JK_XCHG_SUM_MAX_K 16
int jk_xchg_send_tokens(float *const *peer, int32_t *const *peer_idx, int32_t *const *peer_hdr, size_t base,
                        const float *x, const int32_t *tok_dst, const int32_t *dst_m, const int32_t *dst_row,
                        const int32_t *ids, const float *w, int32_t *lead, int T, int K, int M, int H, void *stream);
// MoE side, the outputs of y (grouped rows, as jk_xchg_return_rows) summed
// per token: for every grouped row g < *n that is its token's lead (the header
// hdr at row src_row[perm[g]] starts with perm[g]), the sum over the header's
// pairs of weight x output (their grouped rows: inv, an [rows] scratch this
// call fills from perm), in the header's order with jk_combine_add's rounding,
// to peer[out_a[g]] at row base + out_row[g]. H % 4 == 0. n NULL: g < n_max;
// out_a NULL: peer[0]; out_row NULL: the token row src_row[perm[g]] (the sums
// laid out as the token rows came in: comm/cudampi.c).
// The same headers built on the host (host-routed steps): ent [n, 2 + 2K]
// int32, entry e = {MoE rank m, row, the K receive rows (-1 after the
// token's), the K pair indices into w (-1 likewise)}: peer_hdr[m] at that row
// gets the rows and the pairs' weights w (device).
int jk_xchg_put_headers(int32_t *const *peer_hdr, const int32_t *ent, const float *w, int n, int K, void *stream);
int jk_xchg_return_sums(float *const *peer, size_t base, const float *y, const int32_t *perm, const int32_t *src_row,
                        const int32_t *hdr, int32_t *inv, const int32_t *out_a, const int32_t *out_row,
                        const int32_t *n, int n_max, int K, int H, void *stream);
// MoE side of it: dst[g] = src[src_row[idx[g]]] for g < *n (n_max bounds it; n NULL: g < n_max).
int jk_xchg_gather_rows_via(float *dst, const float *src, const int32_t *src_row, const int32_t *idx, const int32_t *n,
                            int n_max, int H, void *stream);
// The host payload's sums on a MoE rank's GPU: out[o] ([n_out, H]) = the
// sum over j in [off[o], off[o+1]) of y[gi[j]] * w[j] in j order, each
// product and sum rounded on its own (as janus_combine and combine4: one MoE
// rank's sum is the combine's, bit for bit); off [n_out + 1], every range
// non-empty.
int jk_xchg_sum_rows(float *out, const float *y, const int32_t *off, const int32_t *gi, const float *w, int n_out, int H,
                     void *stream);

#ifdef __cplusplus
}
#endif

#endif
