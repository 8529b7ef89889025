// Train a sparse model with C-GaP at 90% sparsity through coppice.hpp (the engine owns the
// model). The C++ twin of examples/c/train_engine.c, plus inference with predict().
//   train_engine [train_limit [test_limit [model [epochs]]]]   (defaults: 10000 2000 mlp 4)
// Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (COPPICE_DATA overrides).
#include <coppice.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "fashion_mnist.hpp"

int main(int argc, char** argv) try {
  const int64_t train_limit = argc > 1 ? std::atoll(argv[1]) : 10000;
  const int64_t test_limit = argc > 2 ? std::atoll(argv[2]) : 2000;
  const std::string model_name = argc > 3 ? argv[3] : "mlp";
  const int epochs = argc > 4 ? std::atoi(argv[4]) : 4;
  using fashion_mnist::height, fashion_mnist::width, fashion_mnist::classes;

  std::cout << "coppice " << coppice::version() << "\n";
  // The training split through the library's IDX loader; the test split from the host's own
  // arrays (copied into the runtime), which predict() below also reads.
  auto train = coppice::Dataset::load_idx("train", train_limit, fashion_mnist::directory());
  const fashion_mnist::Split test_arrays = fashion_mnist::load("t10k", test_limit);
  coppice::Dataset test(test_arrays.images, test_arrays.labels, height, width, classes);
  coppice::Model model(model_name, /*seed=*/1, classes);
  std::cout << model_name << ": " << model.parameter_count() << " parameters; " << train.size()
            << " train / " << test.size() << " test samples\n";

  auto config = coppice::TrainConfig().epochs(epochs).on_epoch([](const coppice::EpochReport& e) {
    std::printf("epoch %d  loss %.4f  test accuracy %.2f%%  sparsity %.4f  %.1fs\n", e.epoch,
                e.train_loss, e.test_accuracy, e.sparsity, e.seconds);
    std::fflush(stdout);
  });
  // C-GaP: κ partitions (3 for the mlp) × 1 round of one-epoch steps, then fine-tuning.
  config.sparsity().method("cgap").sparsity(0.9).rounds(1);

  const coppice::TrainResult result = coppice::train(model, train, test, config);
  std::printf("C-GaP at 90%%: test accuracy %.2f%%, sparsity %.4f, %d epochs in %.1fs\n",
              result.test_accuracy, result.sparsity, result.epochs, result.train_seconds);

  // Inference: logits (count × classes) for the host's own images.
  const std::vector<float> logits = coppice::predict(model, test_arrays.images, height, width);
  int64_t correct = 0;
  for (int64_t i = 0; i < test_arrays.size(); ++i) {
    const float* z = &logits[static_cast<size_t>(i * classes)];
    int best = 0;
    for (int c = 1; c < classes; ++c) best = z[c] > z[best] ? c : best;
    correct += best == test_arrays.labels[static_cast<size_t>(i)];
  }
  std::printf("argmax of predict: %.2f%% correct (evaluate: %.2f%%)\n",
              100.0 * static_cast<double>(correct) / static_cast<double>(test_arrays.size()),
              coppice::evaluate(model, test));

  // A bad call becomes a coppice::Error with the library's status and message.
  try {
    coppice::Model unknown("no-such-model");
  } catch (const coppice::Error& e) {
    std::cout << "a bad call: " << e.status_name() << ": " << e.message() << "\n";
  }
  return 0;
} catch (const coppice::Error& e) {
  std::cerr << "coppice error: " << e.what() << "\n";
  return 1;
} catch (const std::exception& e) {
  std::cerr << "error: " << e.what() << "\n";
  return 1;
}
