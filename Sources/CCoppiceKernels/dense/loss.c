// Softmax cross-entropy with label smoothing.
#include "ck_dense.h"
#include <math.h>

/// Mean softmax cross-entropy with label smoothing (dlogits and the correct count when asked);
/// contract in include/ck_dense.h.
double ck_softmax_cross_entropy(int n, int classes, const float *logits, const int32_t *labels,
                                float smoothing, float *dlogits, int *correct) {
  double total = 0.0;
  int hits = 0;
  const float off = smoothing / (float)classes;
  const float on = 1.0f - smoothing + off;
  for (int i = 0; i < n; i++) {
    const float *z = logits + (size_t)i * classes;
    int label = labels[i];
    float maxv = z[0];
    int arg = 0;
    for (int c = 1; c < classes; c++)
      if (z[c] > maxv) {
        maxv = z[c];
        arg = c;
      }
    if (arg == label) hits++;
    double sum = 0.0;
    for (int c = 0; c < classes; c++) sum += exp((double)(z[c] - maxv));
    const double log_sum = log(sum);
    double loss = 0.0;
    for (int c = 0; c < classes; c++) {
      double log_p = (double)(z[c] - maxv) - log_sum;
      float q = c == label ? on : off;
      loss -= q * log_p;
      if (dlogits) dlogits[(size_t)i * classes + c] = (float)((exp(log_p) - q) / n);
    }
    total += loss;
  }
  if (correct) *correct = hits;
  return n > 0 ? total / n : 0.0;
}
