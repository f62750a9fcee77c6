// comm/hier.h: the hierarchical path of the exchange payload. Rows between an
// attention rank and a MoE rank of the same node go direct; rows for another
// node go (1) to the sender node's gateway (its lowest world rank), (2) once
// per node pair between gateways, (3) from the receiver node's gateway to each
// MoE rank; outputs return the same way. Every rank computes every message
// size from the handshake (x->fwd_am / x->back_am: the pair counts, and with
// rows once per (token, MoE rank) the distinct-token counts gathered with
// it), so no size travels with the rows.
#ifndef JANUS_COMM_HIER_H
#define JANUS_COMM_HIER_H

#include "comm/exchange.h"

void janus_hier_init(janus_xchg *x);
void janus_hier_free(janus_xchg *x);
bool janus_hier_remote(const janus_xchg *x, int world_a, int world_b); // on different nodes?
// Attention rank: post rows for remote nodes to the gateway and the receives
// of their outputs (into the micro-batch's request list).
void janus_hier_attn_post(janus_xchg *x, int l, int i);
// Gateway: stages 1-3 of the forward direction for (l, i).
void janus_hier_gateway_forward(janus_xchg *x, int l, int i);
// MoE rank: post receives of remote rows from its gateway.
void janus_hier_moe_post_recv(janus_xchg *x, int l, int i);
// MoE rank: send outputs for remote attention ranks to its gateway.
void janus_hier_moe_send(janus_xchg *x, int l, int i);
// Gateway: the return direction for (l, i).
void janus_hier_gateway_back(janus_xchg *x, int l, int i);
// Gateway: wait for every send of the layer.
void janus_hier_finish_layer(janus_xchg *x);

#endif
