// engine/generate.c: the continuous-batching loop of one rank (see generate.h).
#include "engine/generate.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int64_t idx;            // request index in the file
    int64_t id;
    const int32_t *prompt;
    int n_prompt, max_new;
    int n_fed;              // positions already in the KV cache
    int n_gen;
    int32_t *gen;           // [max_new]
    float *lp;              // [max_new]
    int32_t *bt;            // block table
    int n_bt;
    double t_admit, t_first, t_last;
    janus_sampling samp;
} seq_t;

void janus_gen_out_init(janus_gen_out *o, int64_t n) {
    memset(o, 0, sizeof *o);
    o->n = n;
    o->n_gen = xcalloc(n, sizeof(int32_t));
    o->tokens = xcalloc(n, sizeof(int32_t *));
    o->logprobs = xcalloc(n, sizeof(float *));
    o->finish = xcalloc(n, 1);
    o->ttft_s = xcalloc(n, sizeof(double));
    o->tpot_s = xcalloc(n, sizeof(double));
}

void janus_gen_out_free(janus_gen_out *o) {
    for (int64_t i = 0; i < o->n; i++) {
        free(o->tokens[i]);
        free(o->logprobs[i]);
    }
    free(o->n_gen);
    free(o->tokens);
    free(o->logprobs);
    free(o->finish);
    free(o->ttft_s);
    free(o->tpot_s);
    free(o->prog_t), free(o->prog_tokens), free(o->prog_done);
    memset(o, 0, sizeof *o);
}

int janus_blocks_needed(int64_t prompt_len, int max_new, int block_size) {
    int64_t positions = prompt_len + max_new - 1; // the last new token is never fed back
    if (positions < 1) positions = 1;
    return (int)((positions + block_size - 1) / block_size);
}

// The step header every rank of a job contributes to: {has work, stop wanted,
// requests done, tokens generated}, summed over the world (lockstep).
static void step_header(janus_engine *en, int64_t *v) {
    if (en->xc) MPI_Allreduce(MPI_IN_PLACE, v, 4, MPI_INT64_T, MPI_SUM, en->xc->world);
}

int janus_generate(janus_engine *en, const janus_requests *R, const int64_t *mine, int64_t n_mine,
                   const janus_gen_opts *o, janus_gen_out *out) {
    const janus_config *c = &en->m->cfg;
    const int V = c->vocab, S = o->max_step_tokens;
    // Block pool: a stack of free block ids.
    int32_t *free_blocks = xmalloc(sizeof(int32_t) * o->kv_blocks);
    int n_free = o->kv_blocks;
    for (int i = 0; i < n_free; i++) free_blocks[i] = n_free - 1 - i;
    seq_t *act = xcalloc(o->max_batch, sizeof(seq_t));
    int *fed = xcalloc(o->max_batch, sizeof(int)); // tokens each sequence feeds this step
    int n_act = 0;
    int64_t next = 0, done = 0;
    // Step buffers, [S] each.
    int32_t *tok = xmalloc(sizeof(int32_t) * S), *pos = xmalloc(sizeof(int32_t) * S);
    const int32_t **bt = xmalloc(sizeof(int32_t *) * S);
    int32_t *out_rows = xmalloc(sizeof(int32_t) * S), *out_seq = xmalloc(sizeof(int32_t) * S);
    float *logits = xmalloc(sizeof(float) * (size_t)S * V);
    float *scratch = xmalloc(sizeof(float) * 3 * (size_t)V);
    double t_start = janus_now_s(), t_report = t_start;
    int64_t gen_at_report = 0;

    const int n_mb = en->n_mb;
    janus_batch *mbs = xcalloc(n_mb, sizeof(janus_batch));
    float **mlog = xcalloc(n_mb, sizeof(float *));
    int32_t *mrows = xmalloc(sizeof(int32_t) * S);
    // GPU ranks choose tokens on the device (the logits stay there).
    const bool dev_sample = en->gpu != NULL;
    janus_row_sampling *rsamp = dev_sample ? xmalloc(sizeof(janus_row_sampling) * S) : NULL;
    int32_t *chosen = dev_sample ? xmalloc(sizeof(int32_t) * S) : NULL;
    float *chosen_lp = dev_sample ? xmalloc(sizeof(float) * S) : NULL;
    int stopped = 0;
    double t_sync = t_start;
    janus_err pe;
    for (;;) {
        // Lockstep: in a job with an exchange every rank takes every step, with
        // zero tokens once its own requests are done, until no rank has work;
        // a stop (signal) on any rank ends the loop on all of them together.
        int64_t hdr[4] = {done < n_mine, o->stop && *o->stop, done, out->gen_tokens};
        step_header(en, hdr);
        const double tnow = janus_now_s();
        if (out->n_prog == 0 || tnow - out->prog_t[out->n_prog - 1] - t_start >= 0.25 || !hdr[0]) {
            if (out->n_prog == out->cap_prog) {
                out->cap_prog = out->cap_prog ? 2 * out->cap_prog : 256;
                out->prog_t = xrealloc(out->prog_t, sizeof(double) * out->cap_prog);
                out->prog_tokens = xrealloc(out->prog_tokens, sizeof(int64_t) * out->cap_prog);
                out->prog_done = xrealloc(out->prog_done, sizeof(int64_t) * out->cap_prog);
            }
            out->prog_t[out->n_prog] = tnow - t_start;
            out->prog_tokens[out->n_prog] = hdr[3];
            out->prog_done[out->n_prog++] = hdr[2];
        }
        if (hdr[1]) { stopped = 1; break; }
        if (!hdr[0]) break;
        // Admit in file order while the batch and the cache have room.
        while (next < n_mine && n_act < o->max_batch) {
            int64_t r = mine[next];
            int n_prompt = (int)(R->offsets[r + 1] - R->offsets[r]);
            int need = janus_blocks_needed(n_prompt, R->max_new[r], o->block_size);
            if (need > n_free) {
                if (n_act == 0)
                    janus_die(R->path, "request id %lld needs %d KV blocks (%d positions) but the cache has %d: raise --kv-cache-mb",
                              (long long)R->ids[r], need, need * o->block_size, o->kv_blocks);
                break;
            }
            seq_t *s = &act[n_act++];
            memset(s, 0, sizeof *s);
            s->idx = r;
            s->id = R->ids[r];
            s->prompt = R->tokens + R->offsets[r];
            s->n_prompt = n_prompt;
            s->max_new = R->max_new[r];
            s->gen = xmalloc(sizeof(int32_t) * s->max_new);
            s->lp = xmalloc(sizeof(float) * s->max_new);
            s->bt = xmalloc(sizeof(int32_t) * need);
            s->n_bt = need;
            for (int b = 0; b < need; b++) s->bt[b] = free_blocks[--n_free];
            s->samp = (janus_sampling){R->temperature[r], R->top_k[r], R->top_p[r], R->seed[r]};
            s->t_admit = janus_now_s();
            next++;
        }
        // Build the step: decode tokens first, then prefill chunks.
        int T = 0, n_out = 0;
        for (int i = 0; i < n_act; i++) {
            seq_t *s = &act[i];
            fed[i] = 0;
            if (s->n_fed < s->n_prompt) continue;
            fed[i] = 1;
            tok[T] = s->gen[s->n_gen - 1];
            pos[T] = s->n_fed;
            bt[T] = s->bt;
            out_rows[n_out] = T;
            out_seq[n_out++] = i;
            T++;
        }
        for (int i = 0; i < n_act && T < S; i++) {
            seq_t *s = &act[i];
            if (s->n_fed >= s->n_prompt) continue;
            int take = s->n_prompt - s->n_fed;
            if (take > S - T) take = S - T;
            for (int j = 0; j < take; j++) {
                tok[T + j] = s->prompt[s->n_fed + j];
                pos[T + j] = s->n_fed + j;
                bt[T + j] = s->bt;
            }
            T += take;
            fed[i] = take;
            if (s->n_fed + take == s->n_prompt) {
                out_rows[n_out] = T - 1;
                out_seq[n_out++] = i;
            }
        }
        // Micro-batches: contiguous token ranges of about T / n_mb tokens; the
        // rows wanting logits (ascending) follow their tokens.
        for (int i = 0, r = 0; i < n_mb; i++) {
            int t0 = (int)((int64_t)T * i / n_mb), t1 = (int)((int64_t)T * (i + 1) / n_mb), r0 = r;
            while (r < n_out && out_rows[r] < t1) mrows[r] = out_rows[r] - t0, r++;
            mbs[i] = (janus_batch){.T = t1 - t0, .tok = tok + t0, .pos = pos + t0, .bt = bt + t0, .n_out = r - r0,
                                   .out_rows = mrows + r0};
            mlog[i] = logits + (size_t)r0 * V;
            if (dev_sample) {
                for (int k = r0; k < r; k++) {
                    const seq_t *s = &act[out_seq[k]];
                    rsamp[k] = (janus_row_sampling){s->samp.temperature, s->samp.top_p, s->samp.top_k, s->n_gen,
                                                    s->samp.seed, s->id};
                }
                mbs[i].samp = rsamp + r0, mbs[i].chosen = chosen + r0, mbs[i].chosen_lp = chosen_lp + r0;
            }
        }
        janus_step(en, mbs, mlog);
        out->steps++;
        for (int i = 0; i < n_act; i++) act[i].n_fed += fed[i];
        // Sample for the rows that ended a prompt or decoded.
        double now = janus_now_s();
        for (int k = 0; k < n_out; k++) {
            seq_t *s = &act[out_seq[k]];
            if (dev_sample) {
                s->gen[s->n_gen] = chosen[k];
                s->lp[s->n_gen] = chosen_lp[k];
            } else {
                const float *lg = logits + (size_t)k * V;
                int32_t t = janus_sample(lg, V, &s->samp, s->id, s->n_gen, scratch);
                s->gen[s->n_gen] = t;
                s->lp[s->n_gen] = cpu_logprob(lg, V, t);
            }
            s->n_gen++;
            if (s->n_gen == 1) s->t_first = now;
            s->t_last = now;
        }
        out->gen_tokens += n_out;
        // Retire finished sequences (compacting the active list in order).
        int w = 0;
        for (int i = 0; i < n_act; i++) {
            seq_t *s = &act[i];
            bool fin = false;
            uint8_t reason = 0;
            if (s->n_gen > 0 && s->n_fed >= s->n_prompt) {
                if (janus_is_eos(c, s->gen[s->n_gen - 1])) fin = true, reason = 1;
                else if (s->n_gen >= s->max_new) fin = true;
            }
            if (!fin) {
                act[w++] = *s;
                continue;
            }
            if (o->parts && janus_parts_append(o->parts, s->idx, s->id, s->n_gen, s->gen, s->lp, reason,
                                               s->t_first - s->t_admit,
                                               s->n_gen > 1 ? (s->t_last - s->t_first) / (s->n_gen - 1) : 0.0, &pe))
                janus_die(NULL, "%s", pe.msg);
            out->n_gen[s->idx] = s->n_gen;
            out->tokens[s->idx] = s->gen;
            out->logprobs[s->idx] = s->lp;
            out->finish[s->idx] = reason;
            out->ttft_s[s->idx] = s->t_first - s->t_admit;
            out->tpot_s[s->idx] = s->n_gen > 1 ? (s->t_last - s->t_first) / (s->n_gen - 1) : 0.0;
            for (int b2 = 0; b2 < s->n_bt; b2++) free_blocks[n_free++] = s->bt[b2];
            free(s->bt);
            done++;
        }
        n_act = w;
        // Progress (rank 0, from the step header: the whole job's counts as of
        // the start of this step) and a periodic flush of the part file.
        if (o->progress_s > 0 && now - t_report >= o->progress_s) {
            const int64_t g_done = hdr[2], g_gen = hdr[3], total = o->total_requests ? o->total_requests : n_mine;
            double rate = (g_gen - gen_at_report) / (now - t_report);
            double per_req = g_done ? (double)g_gen / g_done : 0;
            double eta = rate > 0 && per_req > 0 ? (double)(total - g_done) * per_req / rate : 0;
            janus_log("progress: %lld/%lld requests, %lld tokens, %.1f tokens/s, batch %d on rank 0, eta %.0f s",
                      (long long)g_done, (long long)total, (long long)g_gen, rate, n_act, eta);
            t_report = now;
            gen_at_report = g_gen;
        }
        if (o->parts && now - t_sync >= 5.0) {
            if (janus_parts_stats(o->parts, c->n_layers, c->n_experts, en->expert_counts, &pe)) janus_die(NULL, "%s", pe.msg);
            janus_parts_sync(o->parts);
            t_sync = now;
        }
    }
    // Unfinished sequences (a stop): their buffers; their requests run again on resume.
    for (int i = 0; i < n_act; i++) free(act[i].gen), free(act[i].lp), free(act[i].bt);
    free(free_blocks);
    free(act);
    free(fed);
    free(tok);
    free(pos);
    free(bt);
    free(out_rows);
    free(out_seq);
    free(logits);
    free(scratch);
    free(mbs);
    free(mlog);
    free(mrows);
    free(rsamp), free(chosen), free(chosen_lp);
    if (o->parts) {
        if (janus_parts_stats(o->parts, c->n_layers, c->n_experts, en->expert_counts, &pe)) janus_die(NULL, "%s", pe.msg);
        janus_parts_sync(o->parts);
    }
    return stopped;
}

int janus_moe_loop(janus_engine *en, volatile sig_atomic_t *stop) {
    janus_batch *mbs = xcalloc(en->n_mb, sizeof(janus_batch));
    int stopped = 0;
    for (;;) {
        int64_t hdr[4] = {0, stop && *stop, 0, 0};
        step_header(en, hdr);
        if (hdr[1]) { stopped = 1; break; }
        if (!hdr[0]) break;
        janus_step(en, mbs, NULL);
    }
    free(mbs);
    return stopped;
}
