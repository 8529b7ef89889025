// Dense numeric kernels of Coppice (C, OpenMP, OpenBLAS).
//
// Threading model: OpenMP owns all parallelism. OpenBLAS is kept at one thread and every
// kernel that multiplies matrices splits the work over OpenMP threads itself, so the two
// thread pools never oversubscribe the cores. All tensors are row-major, contiguous float32,
// images in NCHW layout. Gradients are written (not accumulated) unless a function says so.
#ifndef CK_DENSE_H
#define CK_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "ck_jobs.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Sets the number of worker threads for all kernels (>= 1). OpenBLAS is pinned to 1 thread.
void ck_set_threads(int threads);
/// The number of worker threads kernels use.
int ck_get_threads(void);
/// How long (ms) the kernel threads keep spinning for more work after a parallel region before
/// they sleep, for regions started from the calling thread (LLVM/Intel OpenMP's blocktime; the
/// default is 200 ms). 0 lets another thread pool in the same process (a host's, e.g.
/// PyTorch's) have the cores between our products. Returns 1 if applied, 0 if the OpenMP
/// runtime has no such control.
int ck_set_idle_spin(int milliseconds);
/// Number of hardware threads OpenMP sees.
int ck_available_cores(void);
/// 1 when compiled with OpenMP.
int ck_has_openmp(void);

/// C[M×N] = alpha · op(A) · op(B) + beta · C, row-major; op(X) = Xᵀ when trans_x != 0.
/// Parallel over OpenMP threads (each calls single-threaded OpenBLAS on a slice).
void ck_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
/// The same product through OpenBLAS's own threading with `threads` threads (for benchmarks).
void ck_sgemm_openblas(int threads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);

/// Shape of a 2-D convolution (NCHW input, OIHW weight).
typedef struct {
  int batch, in_channels, in_height, in_width;
  int out_channels, kernel_h, kernel_w, stride, padding;
  int out_height, out_width;
} ck_conv_shape;

/// Fills out_height/out_width from the others; returns 0 if the shape is valid, -1 otherwise.
int ck_conv_shape_finish(ck_conv_shape *s);
/// One image: col[(c·kh + i)·kw + j][oy·ow + ox] = x[c][oy·stride − pad + i][ox·stride − pad + j].
void ck_im2col(const ck_conv_shape *s, const float *x_image, float *col);
/// One image: dx_image += col2im(col) (the adjoint of ck_im2col).
void ck_col2im_add(const ck_conv_shape *s, const float *col, float *dx_image);
/// y = conv(x, w) + bias (bias may be NULL).
void ck_conv2d_forward(const ck_conv_shape *s, const float *x, const float *w, const float *bias,
                       float *y);
/// dw (and dbias when not NULL) = gradients for this batch; dx = input gradient when not NULL.
void ck_conv2d_backward(const ck_conv_shape *s, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *dbias);

/// y[n][o] = Σ_i x[n][i]·w[o][i] + bias[o] (bias may be NULL).
void ck_linear_forward(int batch, int in_features, int out_features, const float *x,
                       const float *w, const float *bias, float *y);
/// dw = dyᵀ·x, dbias = column sums of dy (if not NULL), dx = dy·w (if not NULL).
void ck_linear_backward(int batch, int in_features, int out_features, const float *x,
                        const float *w, const float *dy, float *dx, float *dw, float *dbias);

/// Batch normalisation over (N, H, W) per channel. Training mode computes batch statistics,
/// writes save_mean/save_invstd (per channel) and updates running stats with `momentum`
/// (running = (1−momentum)·running + momentum·batch, running variance unbiased).
/// With relu != 0 the output is max(0, ·) (a fused BN+ReLU). image_moments: NULL, or the
/// statistics' sums taken already by the producer of x (ck_batchnorm_image_moments_observer;
/// used only with running statistics).
void ck_batchnorm_forward_train(int n, int c, int hw, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum, float *running_mean,
                                float *running_var, float *save_mean, float *save_invstd,
                                const float *image_moments, float *y, int relu);
/// ck_batchnorm_forward_train without writing y: the batch and running statistics, and each
/// channel's map y = x·scale + shift (scale, shift: c floats each) for a reader that applies it
/// itself (a ck_channel_affine). image_moments: NULL, or the sums taken already by the
/// producer of x (ck_batchnorm_image_moments_observer; used only with running statistics) —
/// then x is not read.
void ck_batchnorm_statistics_train(int n, int c, int hw, const float *x,
                                   const float *image_moments, const float *gamma,
                                   const float *beta, float eps, float momentum,
                                   float *running_mean, float *running_var, float *save_mean,
                                   float *save_invstd, float *scale, float *shift);

/// The sums a batch norm's training statistics take over each plane of x — Σ(x − K) and
/// Σ(x − K)², K the channel's running mean (0 where not finite) — taken image by image by the producer of x while
/// each image is in cache (a convolution's forward, ck_sparse_conv2d_forward_mapped's
/// y_observer), so the statistics need no pass of their own over x.
typedef struct {
  int n, c, hw;
  const float *running_mean; // the shifts (read before the statistics update them)
  float *moments;            // written: 2·n·c floats, plane (image, channel) at 2·(image·c + channel)
} ck_batchnorm_image_moments;

/// observer := takes the moments of each image of x it is given into state->moments (bit for
/// bit the float sums the statistics take per plane).
void ck_batchnorm_image_moments_observer(const ck_batchnorm_image_moments *state,
                                         ck_image_observer *observer);
void ck_batchnorm_forward_eval(int n, int c, int hw, const float *x, const float *gamma,
                               const float *beta, float eps, const float *running_mean,
                               const float *running_var, float *y, int relu);
/// When relu_output is not NULL (the fused BN+ReLU's output), dy counts only where it is > 0.
void ck_batchnorm_backward(int n, int c, int hw, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           const float *relu_output, float *dx, float *dgamma, float *dbeta);
/// The fused BN+ReLU's backward without its output: the ReLU's mask is recomputed from x, γ, β
/// and the saved statistics exactly as the forward computed it (two arrays read per pass
/// instead of three). γ and β must be the values the forward used.
void ck_batchnorm_relu_backward(int n, int c, int hw, const float *x, const float *gamma,
                                const float *beta, const float *save_mean,
                                const float *save_invstd, const float *dy, float *dx,
                                float *dgamma, float *dbeta);

/// What a deferred batch-norm backward's dx planes are made from (filled by
/// ck_batchnorm_backward_deferred; the arrays it names must outlive the source).
typedef struct {
  int n, c, hw, relu;
  const float *x, *dy, *save_mean;
  const float *coefficients; // 5 per channel
} ck_batchnorm_gradient;

/// ck_batchnorm_backward (β NULL) or ck_batchnorm_relu_backward (β given: the fused ReLU's
/// mask recomputed) for x, dy [n, c, h, w], but dx is left to `source`, whose planes are bit for
/// bit the dx the backward writes: dγ and dβ are written, `coefficients` (5·c floats) and
/// `state` filled and `source` set to read them. For a reader that needs only some planes (a
/// first convolution's weight gradient reads only the planes of output channels that keep a
/// weight). image_sums: NULL, or the sums of every plane taken already by the producer of dy
/// (ck_batchnorm_image_sums_observer; no pass over x and dy then). Returns 1; 0 when a size is
/// not positive (nothing written).
int ck_batchnorm_backward_deferred(int n, int c, int h, int w, const float *x, const float *gamma,
                                   const float *beta, const float *save_mean,
                                   const float *save_invstd, const float *image_sums,
                                   const float *dy, float *dgamma, float *dbeta,
                                   float *coefficients, ck_batchnorm_gradient *state,
                                   ck_plane_source *source);

/// The sums a batch norm's backward takes over every plane of x and dy — Σ g and Σ g·(x − mean)
/// with g = dy, or with a fused ReLU (β given) dy where x·scale + shift > 0 — taken image by
/// image by whoever produces dy while each image is in cache (a convolution's backward,
/// ck_sparse_conv2d_backward_fused's dx_observer), so the backward needs no pass of its own
/// for them. x, γ, β, the saved statistics: the forward's (β NULL: no ReLU).
typedef struct {
  int n, c, hw;
  const float *x, *gamma, *beta, *save_mean, *save_invstd;
  float *sums; // written: 2·n·c floats, the two sums of plane (image, channel) at 2·(image·c + channel)
} ck_batchnorm_image_sums;

/// observer := takes the sums of each image of dy it is given into state->sums (bit for bit
/// the float sums the backward's own pass takes per plane).
void ck_batchnorm_image_sums_observer(const ck_batchnorm_image_sums *state,
                                      ck_image_observer *observer);

/// One channel's batch statistics over x [n, c, hw] (or from the per-image moments taken
/// already, image_moments not NULL; needs running_mean): writes save_mean[ch],
/// save_invstd[ch], updates the running statistics (when not NULL) and returns the affine map
/// y = x·scale + shift that normalises the channel. Shared by the batch-norm kernels.
void ck_batchnorm_channel_statistics(int n, int c, int hw, int ch, const float *x,
                                     const float *image_moments, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     float *running_mean, float *running_var, float *save_mean,
                                     float *save_invstd, float *scale_out, float *shift_out);

/// Batch norm (training statistics, as ck_batchnorm_forward_train) + ReLU + 2×2 max pooling
/// with stride 2, fused: x [n, c, h, w] → y [n, c, h/2, w/2] (an odd last row or column is
/// dropped, as the pooling does); winner [n, c, h/2, w/2] receives each window's winning cell
/// (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; the first maximum wins). The
/// normalised full-size output is never stored. (With its statistics and pooling taken by the
/// producer of x: ck_batchnorm_relu_maxpool2_forward_pooled.)
void ck_batchnorm_relu_maxpool2_forward_train(int n, int c, int h, int w, const float *x,
                                              const float *gamma, const float *beta, float eps,
                                              float momentum, float *running_mean,
                                              float *running_var, float *save_mean,
                                              float *save_invstd, float *y, uint8_t *winner);
/// The pooling of the fused layer taken by the producer of x while each image is in cache (a
/// convolution's forward, ck_sparse_conv2d_forward_mapped's y_observer), with the statistics'
/// moments: per window the extreme of x in the direction of γ's sign (x·sign maximal, sign =
/// −1 where γ < 0) and its cell (0 where γ = 0). The normalisation is monotone, so the pooled
/// output is that value normalised (bit for bit the stored path's; only where normalisation
/// ties two different values can the winning cell differ — both are maxima).
typedef struct {
  int n, c, h, w;             // x's dimensions (h and w even)
  const float *running_mean;  // the moments' shifts (as ck_batchnorm_image_moments)
  const float *gamma;         // the pooling direction per channel
  float *moments;             // written: 2·n·c floats, as ck_batchnorm_image_moments
  float *pooled;              // written: n·c·(h/2)·(w/2) window extremes (the output's buffer)
  uint8_t *winner;            // written: n·c·(h/2)·(w/2) winning cells
} ck_norm_pool_image_windows;

/// observer := takes the moments and the pooling of each image of x it is given into state.
void ck_norm_pool_image_windows_observer(const ck_norm_pool_image_windows *state,
                                         ck_image_observer *observer);

/// ck_batchnorm_relu_maxpool2_forward_train after a producer gave every image to
/// ck_norm_pool_image_windows_observer (needs running statistics): the statistics from its
/// moments, then y := max(normalised pooled value, 0) in place over its pooled values (y =
/// state.pooled; the winners are its). x is not read.
void ck_batchnorm_relu_maxpool2_forward_pooled(int n, int c, int h, int w, const float *x,
                                               const float *gamma, const float *beta, float eps,
                                               float momentum, float *running_mean,
                                               float *running_var, float *save_mean,
                                               float *save_invstd, const float *image_moments,
                                               float *y);
/// Its backward from the pooled gradient dy: dγ, dβ and (when not NULL) dx [n, c, h, w]; y and
/// winner are the forward's outputs. β (may be NULL) is the forward's: with it the batch sums
/// come from the pooled arrays and dx is written image by image (faster); both ways give the
/// same gradients to rounding.
void ck_batchnorm_relu_maxpool2_backward(int n, int c, int h, int w, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *save_mean, const float *save_invstd,
                                         const float *y, const uint8_t *winner, const float *dy,
                                         float *dx, float *dgamma, float *dbeta);

/// What a deferred BN+ReLU+pool backward's dx planes are made from (filled by
/// ck_batchnorm_relu_maxpool2_backward_deferred; the arrays it names must outlive the source).
typedef struct {
  int n, c, h, w;
  const float *x, *save_mean, *y, *dy;
  const uint8_t *winner;
  const float *coefficients; // 3 per channel: dx = k·(count·g − a − (x − mean)·b)
} ck_norm_pool_gradient;

/// ck_batchnorm_relu_maxpool2_backward with β, but dx is left to `source` (its planes are bit
/// for bit the ones the backward writes): dγ and dβ are written, `coefficients` (3·c floats)
/// and `state` filled and `source` set to read them. Returns 1; 0 when dx cannot be made image
/// by image (a channel's γ too small against its β, n or c 0, no memory) — then nothing is
/// written and the caller runs ck_batchnorm_relu_maxpool2_backward. image_sums: NULL, or the
/// per-image sums taken already by the producer of dy (ck_norm_pool_image_sums_observer; no
/// pass over y and dy then).
int ck_batchnorm_relu_maxpool2_backward_deferred(
    int n, int c, int h, int w, const float *x, const float *gamma, const float *beta,
    const float *save_mean, const float *save_invstd, const float *y, const uint8_t *winner,
    const float *image_sums, const float *dy, float *dgamma, float *dbeta, float *coefficients,
    ck_norm_pool_gradient *state, ck_plane_source *source);

/// The per-image sums a BN+ReLU+pool backward by image takes over its pooled output y and the
/// pooled gradient dy (Σg and Σg·(y − β) per plane, g = dy where y > 0), taken image by image by
/// the producer of dy while each image is in cache (the next convolution's backward, whose input
/// y is, ck_sparse_conv2d_backward_fused's dx_observer).
typedef struct {
  int n, c, h, w;         // the layer's input dimensions (y: n × c × h/2 × w/2)
  const float *y, *beta;  // the forward's pooled output and β
  float *sums;            // written: 2·n·c floats, per image its channels' two sums
} ck_norm_pool_image_sums;

/// observer := takes each image's sums of dy it is given into state->sums (bit for bit the
/// backward's own).
void ck_norm_pool_image_sums_observer(const ck_norm_pool_image_sums *state,
                                      ck_image_observer *observer);

/// A residual block's end: x [batch, in_channels, in_height, in_width] is the block input,
/// the body's output and y are [batch, out_channels, out_height, out_width]. Equal shapes: the
/// identity shortcut; otherwise "option A" (x subsampled by in_height/out_height, its channels
/// at offset (out_channels − in_channels)/2, zeros elsewhere).
typedef struct {
  int batch, in_channels, in_height, in_width, out_channels, out_height, out_width;
} ck_residual_shape;
/// y = relu(body + shortcut(x)), one pass.
void ck_residual_relu_forward(const ck_residual_shape *s, const float *body, const float *x,
                              float *y);
/// y = relu(map(body) + shortcut(x)), one pass: the body's last batch norm left unstored
/// (ck_channel_affine), bit for bit the sum with its output.
void ck_residual_relu_forward_mapped(const ck_residual_shape *s, const float *body,
                                     const ck_channel_affine *body_map, const float *x,
                                     float *y);
/// grad_sum = dy where y > 0, else 0 (the gradient reaching the body and the shortcut), image
/// by image; each finished image is given to `observer` when not NULL (the body's last batch
/// norm takes its backward's sums there: ck_batchnorm_image_sums_observer).
void ck_residual_relu_backward(const ck_residual_shape *s, const float *y, const float *dy,
                               float *grad_sum, const ck_image_observer *observer);
/// dx = grad_body + shortcutᵀ(grad_sum), one pass (grad_body: the body's input gradient).
void ck_residual_input_gradient(const ck_residual_shape *s, const float *grad_body,
                                const float *grad_sum, float *dx);

/// y = max(x, 0).
void ck_relu_forward(size_t count, const float *x, float *y);
/// dx = dy where y > 0, else 0.
void ck_relu_backward(size_t count, const float *y, const float *dy, float *dx);
/// y = a + b.
void ck_add(size_t count, const float *a, const float *b, float *y);
/// y += x.
void ck_add_inplace(size_t count, const float *x, float *y);
/// y[n][c] = bias[c] added over a batch of rows (y is n × c).
void ck_add_bias_rows(int n, int c, const float *bias, float *y);

/// Max pooling, window k×k, stride s, padding p (padded cells never win). `argmax` receives the
/// flat input index (within the image plane) of each output's winner.
void ck_maxpool_forward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                        const float *x, float *y, int32_t *argmax);
void ck_maxpool_backward(int planes, int h, int w, int oh, int ow, const int32_t *argmax,
                         const float *dy, float *dx);
/// Average pooling (padding counted as zeros, divisor k·k).
void ck_avgpool_forward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                        const float *x, float *y);
void ck_avgpool_backward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                         const float *dy, float *dx);

/// Softmax cross-entropy with label smoothing ε over a batch of logits (n × classes).
/// Returns the mean loss; writes dlogits = (softmax − target)/n when dlogits is not NULL and
/// the number of rows whose arg-max equals the label into *correct when not NULL.
double ck_softmax_cross_entropy(int n, int classes, const float *logits, const int32_t *labels,
                                float smoothing, float *dlogits, int *correct);

/// SGD with momentum (dampening 0), optional Nesterov, L2 weight decay added to the gradient.
void ck_sgd_update(size_t count, float *w, const float *g, float *velocity, float lr,
                   float momentum, float weight_decay, int nesterov);
/// AdamW (decoupled weight decay), step t >= 1.
void ck_adamw_update(size_t count, float *w, const float *g, float *m, float *v, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t);
/// The same updates of only the weights at positions at[0..<count] (ascending, distinct; the
/// velocity or moments are those of the whole tensor). Each updated weight gets exactly the
/// arithmetic of the full update; `at` NULL updates all `count` weights.
void ck_sgd_update_at(size_t count, const int32_t *at, float *w, const float *g,
                      float *velocity, float lr, float momentum, float weight_decay,
                      int nesterov);
void ck_adamw_update_at(size_t count, const int32_t *at, float *w, const float *g, float *m,
                        float *v, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t t);

/// Inverted dropout: mask[i] = 0 with probability p else 1/(1−p), from a counter-based RNG
/// keyed by seed; y = x·mask.
void ck_dropout_forward(size_t count, float p, uint64_t seed, const float *x, float *mask,
                        float *y);
/// dst (cols × rows) = srcᵀ, src is rows × cols.
void ck_transpose(int rows, int cols, const float *src, float *dst);

/// y = a ⊙ b.
void ck_mul(size_t count, const float *a, const float *b, float *y);

#ifdef __cplusplus
}
#endif
#endif
