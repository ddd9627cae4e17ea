/* Cross-entropy of two rows through the C ABI: forward, then the gradient.
 *   cc -std=c11 logits.c $(pkg-config --cflags --libs tokenmath) */
#include <stdio.h>
#include "tokenmath.h"

int main(void) {
  enum { ROWS = 2, VOCAB = 4 };
  const float logits[ROWS * VOCAB] = {1, 2, 3, 4, 0.5f, 1.5f, -2, 0};
  const int32_t targets[ROWS] = {2, -100}; /* -100: no target for that row */
  float lse[ROWS], entropy[ROWS], logp[ROWS], max[ROWS], log_sum[ROWS], dx[ROWS * VOCAB];

  tkm_logits_input in;
  tkm_logits_input_init(&in); /* struct_size, temperature 1, NULL pointers */
  in.logits = logits;
  in.rows = ROWS;
  in.vocab = VOCAB;
  in.row_stride = VOCAB;
  in.targets = targets;
  tkm_status s = tkm_logits_fwd(NULL, &in, lse, entropy, logp, max, log_sum, NULL);

  /* d(-logp)/dlogits: upstream g_logp = -1. The backward reads max, log_sum and entropy. */
  const float g_logp[ROWS] = {-1, -1};
  if (s == TKM_STATUS_OK)
    s = tkm_logits_bwd(NULL, TKM_DTYPE_F32, logits, ROWS, VOCAB, VOCAB, targets, NULL, 1.0f, NULL, max, log_sum,
                       entropy, g_logp, NULL, NULL, TKM_DTYPE_F32, dx, VOCAB);
  if (s != TKM_STATUS_OK) {
    fprintf(stderr, "tokenmath: %s\n", tkm_status_str(s));
    return 1;
  }
  printf("logp %.6f  entropy %.6f  dx[0][2] %.6f\n", logp[0], entropy[0], dx[2]);
  return 0;
}
