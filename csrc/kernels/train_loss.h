/* train_loss.h — the loss kernels of a training step: loss value, accuracy count and the
 * gradient of the MEAN loss w.r.t. the network's output, in one pass.
 *
 * in[0] is the output (logits for CE and BCE), in[1] the targets (float32; class labels
 * for CE). out is one block: [d_output (same size as the output) | loss (1) | correct (1)].
 * correct is a float count (exact up to 2^24); MSE writes 0 there.
 */
#ifndef ND_TRAIN_LOSS_H
#define ND_TRAIN_LOSS_H
#include "nd_common.h"

/* Softmax cross-entropy: logits (N,K,INNER), labels (N,INNER) (INNER = H*W for per-pixel
 * CE on (K,H,W), 1 for vectors). The mean is over the N*INNER positions. */
typedef struct {
    int64_t n, k, inner;
    double label_smoothing;     /* torch's epsilon: target = (1 - eps) one_hot + eps / K */
} nd_loss_ce_params;

/* MSE and BCE with logits: output and targets are (N,SIZE), the mean is over N*SIZE. */
typedef struct {
    int64_t n, size;
} nd_loss_mse_params;

typedef nd_loss_mse_params nd_loss_bce_params;

nd_status nd_loss_ce_f32(const nd_loss_ce_params *p, float *out, const float *const *in,
                         const float *w, const float *bias, float *ws);
nd_status nd_loss_mse_f32(const nd_loss_mse_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
nd_status nd_loss_bce_f32(const nd_loss_bce_params *p, float *out, const float *const *in,
                          const float *w, const float *bias, float *ws);
#endif
