// A host that owns its model, through coppice.hpp: the C++ twin of examples/c/sparsify_mlp.c.
// A small MLP (784-64-32-10, ReLU, softmax cross-entropy) with its own weights, loss and SGD
// with momentum, trained on a Fashion-MNIST subset while a coppice::Sparsifier drives C-GaP at
// 90% sparsity. Its linear layers run through coppice::SparseLinear, bound to the sparsifier's
// masks: the sparse kernels where they pay, the weight gradient only at kept positions.
// (bindings/cpp/tests/test_coppice_hpp.cpp tests the same loop.)
//   sparsify_mlp [train_limit [test_limit [epochs]]]     (defaults: 10000 2000 4)
#include <coppice.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fashion_mnist.hpp"

namespace {

constexpr int kPixels = fashion_mnist::pixels, kClasses = fashion_mnist::classes, kBatch = 64;
constexpr double kSparsity = 0.9;
constexpr double kPi = 3.14159265358979323846;

struct Layer {
  std::string name;
  int in, out;
  std::vector<float> w, b, gw, gb, vw, vb;  // weights out×in, bias, gradients, momentum

  Layer(std::string layer_name, int inputs, int outputs, std::mt19937& rng)
      : name(std::move(layer_name)), in(inputs), out(outputs),
        w(size()), b(outputs), gw(size()), gb(outputs), vw(size()), vb(outputs) {
    std::uniform_real_distribution<float> init(-std::sqrt(6.0f / in), std::sqrt(6.0f / in));
    for (float& x : w) x = init(rng);
  }
  size_t size() const { return static_cast<size_t>(in) * static_cast<size_t>(out); }

  std::optional<coppice::SparseLinear> op;  // bound to the sparsifier's parameter `name`

  // y (batch×out) = x (batch×in)·Wᵀ + b, optionally through ReLU.
  void forward(const float* x, int batch, float* y, bool relu) {
    op->forward(x, batch, b.data(), y);
    if (relu) std::for_each(y, y + static_cast<size_t>(batch) * out, [](float& v) { v = std::max(v, 0.0f); });
  }

  // Gradients of W (at kept positions) and b; dx (may be null) gets the input gradient.
  void backward(const float* x, const float* dy, int batch, float* dx) {
    op->backward(x, dy, batch, dx, gw.data(), gb.data());
  }

  void sgd(float lr, float momentum) {
    for (size_t i = 0; i < w.size(); ++i) vw[i] = momentum * vw[i] + gw[i], w[i] -= lr * vw[i];
    for (size_t i = 0; i < b.size(); ++i) vb[i] = momentum * vb[i] + gb[i], b[i] -= lr * vb[i];
  }
};

struct Mlp {
  std::vector<Layer> layers;
  std::vector<float> x, h1, h2, logits, d1, d2;

  explicit Mlp(std::mt19937& rng)
      : x(kBatch * kPixels), h1(kBatch * 64), h2(kBatch * 32), logits(kBatch * kClasses),
        d1(kBatch * 64), d2(kBatch * 32) {
    layers.emplace_back("fc1", kPixels, 64, rng);
    layers.emplace_back("fc2", 64, 32, rng);
    layers.emplace_back("fc3", 32, kClasses, rng);
  }

  void forward(int batch) {
    layers[0].forward(x.data(), batch, h1.data(), true);
    layers[1].forward(h1.data(), batch, h2.data(), true);
    layers[2].forward(h2.data(), batch, logits.data(), false);
  }

  // Softmax cross-entropy; returns the summed loss and leaves d(mean loss)/d(logits) in logits.
  double loss_backward(const int32_t* labels, int batch) {
    double loss = 0;
    for (int s = 0; s < batch; ++s) {
      float* z = &logits[static_cast<size_t>(s) * kClasses];
      const float max = *std::max_element(z, z + kClasses);
      float sum = 0;
      for (int c = 0; c < kClasses; ++c) sum += (z[c] = std::exp(z[c] - max));
      for (int c = 0; c < kClasses; ++c) z[c] /= sum;
      loss -= std::log(z[labels[s]] + 1e-12);
      z[labels[s]] -= 1;
      for (int c = 0; c < kClasses; ++c) z[c] /= static_cast<float>(batch);
    }
    return loss;
  }

  void backward(int batch) {
    auto relu_backward = [](const std::vector<float>& y, std::vector<float>& dy, size_t n) {
      for (size_t i = 0; i < n; ++i)
        if (y[i] <= 0) dy[i] = 0;
    };
    layers[2].backward(h2.data(), logits.data(), batch, d2.data());
    relu_backward(h2, d2, static_cast<size_t>(batch) * 32);
    layers[1].backward(h1.data(), d2.data(), batch, d1.data());
    relu_backward(h1, d1, static_cast<size_t>(batch) * 64);
    layers[0].backward(x.data(), d1.data(), batch, nullptr);
  }

  double accuracy(const fashion_mnist::Split& data) {
    int64_t correct = 0;
    for (int64_t start = 0; start < data.size(); start += kBatch) {
      const int batch = static_cast<int>(std::min<int64_t>(kBatch, data.size() - start));
      std::copy_n(&data.images[static_cast<size_t>(start * kPixels)], batch * kPixels, x.begin());
      forward(batch);
      for (int s = 0; s < batch; ++s) {
        const float* z = &logits[static_cast<size_t>(s) * kClasses];
        const int32_t label = data.labels[static_cast<size_t>(start + s)];
        correct += std::max_element(z, z + kClasses) - z == label;
      }
    }
    return 100.0 * static_cast<double>(correct) / static_cast<double>(data.size());
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const int64_t train_limit = argc > 1 ? std::atoll(argv[1]) : 10000;
  const int64_t test_limit = argc > 2 ? std::atoll(argv[2]) : 2000;
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 4;
  const float lr0 = 0.05f;
  if (epochs < 1) throw std::invalid_argument("epochs must be >= 1");

  const fashion_mnist::Split train = fashion_mnist::load("train", train_limit);
  const fashion_mnist::Split test = fashion_mnist::load("t10k", test_limit);
  std::mt19937 rng(7);
  Mlp mlp(rng);
  const int64_t steps_per_epoch = (train.size() + kBatch - 1) / kBatch;
  const int64_t total_steps = steps_per_epoch * epochs;

  // C-GaP at 90%: 3 partitions (one layer each), 2 rounds filling 75% of training, then
  // fine-tuning with frozen masks.
  const auto config = coppice::SparsifierConfig()
                          .method("cgap")
                          .sparsity(kSparsity)
                          .rounds(2)
                          .total_steps(total_steps)
                          .steps_per_epoch(steps_per_epoch)
                          .seed(7);
  coppice::Sparsifier sparsifier(config);
  for (Layer& l : mlp.layers) {
    sparsifier.add_parameter(l.name, l.w.data(), {l.out, l.in}, l.gw.data());
    l.op.emplace(sparsifier, l.name);  // the layer's products on Coppice's kernels
  }
  sparsifier.start();
  std::printf("%lld train / %lld test samples, %d epochs of %lld steps; %s\n",
              static_cast<long long>(train.size()), static_cast<long long>(test.size()), epochs,
              static_cast<long long>(steps_per_epoch), sparsifier.phase().c_str());

  std::vector<int> order(static_cast<size_t>(train.size()));
  std::iota(order.begin(), order.end(), 0);
  std::vector<int32_t> labels(kBatch);
  int64_t step = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double loss = 0;
    for (int64_t start = 0; start < train.size(); start += kBatch) {
      const int batch = static_cast<int>(std::min<int64_t>(kBatch, train.size() - start));
      const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
      const float lr = static_cast<float>(lr0 * 0.5 * (1 + std::cos(kPi * progress)));  // cosine
      for (int s = 0; s < batch; ++s) {
        const size_t sample = static_cast<size_t>(order[static_cast<size_t>(start + s)]);
        std::copy_n(&train.images[sample * kPixels], kPixels,
                    &mlp.x[static_cast<size_t>(s) * kPixels]);
        labels[static_cast<size_t>(s)] = train.labels[sample];
      }
      mlp.forward(batch);
      loss += mlp.loss_backward(labels.data(), batch);
      mlp.backward(batch);
      sparsifier.mask_gradients();  // after backward
      for (Layer& l : mlp.layers) l.sgd(lr, 0.9f);
      ++step;
      if (sparsifier.step()) {  // after the optimizer step; true when masks changed
        size_t reset = 0;
        for (Layer& l : mlp.layers) {
          const std::vector<uint8_t> changed = sparsifier.changed_mask(l.name);
          for (size_t i = 0; i < changed.size(); ++i)
            if (changed[i]) l.vw[i] = 0, ++reset;
        }
        std::printf("  step %lld: masks changed (%zu momenta reset); now %s\n",
                    static_cast<long long>(step), reset, sparsifier.phase().c_str());
      }
    }
    std::printf("epoch %d  loss %.4f  test accuracy %.2f%%  sparsity %.4f\n", epoch,
                loss / static_cast<double>(train.size()), mlp.accuracy(test),
                sparsifier.sparsity());
  }

  // The masks live in the sparsifier; the host's weights are zero wherever a mask is 0.
  for (const Layer& l : mlp.layers) {
    const std::vector<uint8_t> mask = sparsifier.mask(l.name);
    const auto masked = std::count(mask.begin(), mask.end(), uint8_t{0});
    const coppice::LayerExecution ran = l.op->execution();
    std::printf("%s: %lld of %zu weights masked, sparsity %.6f; last forward/backward on the %s/%s "
                "kernels\n", l.name.c_str(), static_cast<long long>(masked), mask.size(),
                sparsifier.sparsity(l.name), ran.forward_sparse ? "sparse" : "dense",
                ran.backward_sparse ? "sparse" : "dense");
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
