// Tests of coppice.hpp: every wrapper call once, the error paths (each must become a
// coppice::Error with the right status and a message), move semantics and callbacks.
// Built and run by `make test-cpp` (mk/examples.mk). Needs no data files.
#include <coppice.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../../../Tests/abi/reference_products.h"

namespace {

int failures = 0, checks = 0;

void expect(bool condition, const std::string& what) {
  ++checks;
  if (!condition) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// Runs f, which must throw coppice::Error with `status` (or `alternative`, where the header
// and the library disagree) and a non-empty message.
template <class F>
void expect_error(coppice_status status, const std::string& what, F f,
                  coppice_status alternative = COPPICE_OK) {
  ++checks;
  try {
    f();
    ++failures;
    std::printf("FAIL: %s: no exception\n", what.c_str());
  } catch (const coppice::Error& e) {
    if ((e.status() != status && e.status() != alternative) || e.message().empty()) {
      ++failures;
      std::printf("FAIL: %s: got %s (%s), expected %s\n", what.c_str(), e.status_name(), e.what(),
                  coppice_status_name(status));
    }
  } catch (const std::exception& e) {
    ++failures;
    std::printf("FAIL: %s: unexpected exception %s\n", what.c_str(), e.what());
  }
}

static_assert(!std::is_copy_constructible_v<coppice::Sparsifier>);
static_assert(!std::is_copy_assignable_v<coppice::SparseMatrix>);
static_assert(std::is_nothrow_move_constructible_v<coppice::Model>);
static_assert(std::is_nothrow_move_assignable_v<coppice::Dataset>);
static_assert(std::is_nothrow_destructible_v<coppice::Sparsifier>);
static_assert(std::is_base_of_v<std::runtime_error, coppice::Error>);
static_assert(!std::is_copy_constructible_v<coppice::SparseLinear>);
static_assert(std::is_nothrow_move_constructible_v<coppice::SparseConv2d>);

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("coppice-hpp-" + std::to_string(std::random_device{}()) + "-" + name);
}

void library() {
  expect(coppice::version_matches(), "version matches the header");
  expect(coppice::version() == std::to_string(COPPICE_VERSION_MAJOR) + "." +
                                   std::to_string(COPPICE_VERSION_MINOR) + "." +
                                   std::to_string(COPPICE_VERSION_PATCH),
         "version string");
  const int threads = coppice::threads();
  coppice::set_threads(1);
  expect(coppice::threads() == 1, "set_threads(1)");
  coppice::set_threads(threads);
  expect_error(COPPICE_INVALID_ARGUMENT, "set_threads(-1)", [] { coppice::set_threads(-1); });
}

void sparsifier_config() {
  coppice_sparsifier_config c;
  coppice_sparsifier_config_init(&c);
  const coppice::SparsifierConfig defaults;
  expect(defaults.method() == (c.method ? c.method : ""), "default method from the library");
  expect(defaults.sparsity() == c.sparsity && defaults.partitions() == c.partitions &&
             defaults.rounds() == c.rounds && defaults.seed() == c.seed,
         "default numbers from the library");
  expect(defaults.distribution().has_value() == (c.distribution != nullptr),
         "default distribution from the library");

  auto a = coppice::SparsifierConfig().method("rigl").sparsity(0.8).distribution("erk");
  auto b = a;
  b.method("set").distribution("");
  expect(a.method() == "rigl" && b.method() == "set", "copies are independent");
  expect(a.distribution() == std::optional<std::string>("erk") && !b.distribution(),
         "empty distribution means the method's default");
  const coppice_sparsifier_config ca = a.c();
  expect(std::string(ca.method) == "rigl" && ca.sparsity == 0.8 &&
             ca.struct_size == sizeof(coppice_sparsifier_config),
         "c() carries the values and struct_size");
}

void sparsifier() {
  std::vector<float> w1(6 * 10), g1(w1.size()), w2(10 * 4), g2(w2.size());
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& x : w1) x = normal(rng);
  for (float& x : w2) x = normal(rng);
  const auto config =
      coppice::SparsifierConfig().method("cgap").sparsity(0.5).total_steps(20).partitions(2);

  expect_error(COPPICE_INVALID_ARGUMENT, "sparsity 1.0",
               [&] { coppice::Sparsifier s(coppice::SparsifierConfig(config).sparsity(1.0)); });
  expect_error(COPPICE_INVALID_ARGUMENT, "unknown method",
               [&] { coppice::Sparsifier s(coppice::SparsifierConfig(config).method("magic")); });
  {
    // Hardening: names and paths with an embedded NUL are refused (they were cut there), and
    // the vector overload refuses buffers that do not match the shape.
    coppice::Sparsifier s(config);
    std::vector<float> short_weights(5), right(6 * 10), short_gradients(3);
    expect_error(COPPICE_INVALID_ARGUMENT, "name with a NUL byte",
                 [&] { s.add_parameter(std::string("fc\0x", 4), w1.data(), {6, 10}); });
    expect_error(COPPICE_INVALID_ARGUMENT, "weights shorter than the shape",
                 [&] { s.add_parameter("fc", short_weights, {6, 10}); });
    expect_error(COPPICE_INVALID_ARGUMENT, "gradients shorter than the shape",
                 [&] { s.add_parameter("fc", right, {6, 10}, &short_gradients); });
    s.add_parameter("fc", right, {6, 10});
    s.start();
    expect_error(COPPICE_INVALID_ARGUMENT, "path with a NUL byte",
                 [&] { s.save(std::string("/tmp/state\0.json", 17)); });
  }
  expect_error(COPPICE_INVALID_ARGUMENT, "total_steps 0",
               [&] { coppice::Sparsifier s(coppice::SparsifierConfig(config).total_steps(0)); });
  expect_error(COPPICE_INVALID_ARGUMENT, "NaN sparsity", [&] {
    coppice::Sparsifier s(
        coppice::SparsifierConfig(config).sparsity(std::numeric_limits<double>::quiet_NaN()));
  });

  coppice::Sparsifier s(config);
  expect_error(COPPICE_INVALID_STATE, "start without parameters", [&] { s.start(); });
  s.add_parameter("w1", w1.data(), {6, 10}, g1.data());
  expect_error(COPPICE_INVALID_ARGUMENT, "name registered twice",
               [&] { s.add_parameter("w1", w1.data(), {6, 10}); });
  expect_error(COPPICE_INVALID_ARGUMENT, "null weights",
               [&] { s.add_parameter("w0", nullptr, {6, 10}); });
  expect_error(COPPICE_INVALID_ARGUMENT, "non-positive dimension",
               [&] { s.add_parameter("w0", w1.data(), {6, 0}); });
  expect_error(COPPICE_INVALID_ARGUMENT, "rank 0", [&] { s.add_parameter("w0", w1.data(), {}); });
  s.add_parameter("w2", w2.data(), {10, 4}, g2.data());
  expect_error(COPPICE_INVALID_STATE, "step before start", [&] { s.step(); });
  expect(s.parameter_count() == 2, "parameter_count");
  expect(s.parameter_names() == std::vector<std::string>{"w1", "w2"}, "parameter_names");
  expect(s.element_count("w2") == 40, "element_count");

  s.start();
  expect_error(COPPICE_INVALID_STATE, "add after start",
               [&] { s.add_parameter("w3", w2.data(), {40}); });
  expect_error(COPPICE_INVALID_STATE, "start twice", [&] { s.start(); });
  expect(!s.phase().empty(), "phase after start");
  expect(s.mask("w1").size() == 60, "mask size");
  expect(s.changed_mask("w2").size() == 40, "changed_mask size");
  expect_error(COPPICE_NOT_FOUND, "mask of an unknown name", [&] { s.mask("nope"); });
  expect_error(COPPICE_NOT_FOUND, "sparsity of an unknown name", [&] { s.sparsity("nope"); });
  expect_error(COPPICE_SHAPE_MISMATCH, "mask into a short buffer", [&] {
    std::vector<uint8_t> m(3);
    s.mask("w1", m.data(), 3);
  });

  bool changed_once = false;
  for (int i = 0; i < 20; ++i) {
    for (float& g : g1) g = 1.0f;
    s.mask_gradients();
    const std::vector<uint8_t> m = s.mask("w1");
    bool masked_ok = true;
    for (size_t k = 0; k < m.size(); ++k) masked_ok = masked_ok && (m[k] || g1[k] == 0.0f);
    expect(masked_ok, "mask_gradients zeroes masked gradients");
    (void)s.needs_dense_gradients();
    changed_once = s.step() || changed_once;
  }
  expect(changed_once, "a C-GaP step changed masks");
  expect(s.steps() == 20, "steps");
  expect(s.sparsity("w1") == 0.5 && s.sparsity("w2") == 0.5 && s.sparsity() == 0.5,
         "exact sparsity at the end");

  // save / load
  const std::string path = temp_path("state").string();
  s.save(path);
  {
    coppice::Sparsifier resumed(config);
    resumed.add_parameter("w1", w1.data(), {6, 10}, g1.data());
    resumed.add_parameter("w2", w2.data(), {10, 4}, g2.data());
    resumed.load(path);
    expect(resumed.steps() == 20 && resumed.mask("w1") == s.mask("w1"), "load restores state");
  }
  {
    std::ofstream(path) << "not a sparsifier state";
    coppice::Sparsifier other(config);
    other.add_parameter("w1", w1.data(), {6, 10});
    other.add_parameter("w2", w2.data(), {10, 4});
    expect_error(COPPICE_INVALID_FILE, "load of a garbage file", [&] { other.load(path); });
    expect_error(COPPICE_IO_ERROR, "load of a missing file",
                 [&] { other.load(path + ".missing"); });
  }
  std::filesystem::remove(path);
  expect_error(COPPICE_IO_ERROR, "save into a missing directory",
               [&] { s.save("/nonexistent-coppice-dir/state"); });

  // moves
  coppice::Sparsifier moved = std::move(s);
  expect(static_cast<bool>(moved) && !static_cast<bool>(s), "move transfers the handle");
  expect(moved.sparsity() == 0.5, "moved-to object works");
  expect_error(COPPICE_INVALID_STATE, "use after move", [&] { s.step(); });
  expect_error(COPPICE_INVALID_STATE, "phase after move", [&] { (void)s.phase(); });
  s = std::move(moved);
  expect(s.steps() == 20, "move assignment back");
}

// A host's training loop (784-64-32-10 weights, random gradients, SGD with momentum reset where
// changed_mask says) driven by C-GaP at 90%: every matrix ends at exactly round(n*0.9) zeros,
// zero in the host's buffers; the state saved and loaded into a fresh sparsifier gives the same
// steps, phase and masks; SparseMatrix's three products on the 90% sparse 64×784 layer agree
// with plain loops.
void host_training_loop() {
  struct Weights {
    std::string name;
    int in, out;
    std::vector<float> w, g, v;
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<Weights> layers;
  const int sizes[] = {784, 64, 32, 10};
  for (int k = 0; k < 3; ++k) {
    const size_t n = static_cast<size_t>(sizes[k]) * static_cast<size_t>(sizes[k + 1]);
    layers.push_back({"fc" + std::to_string(k + 1), sizes[k], sizes[k + 1], std::vector<float>(n),
                      std::vector<float>(n), std::vector<float>(n)});
    const float bound = std::sqrt(6.0f / static_cast<float>(sizes[k]));
    for (float& x : layers.back().w) x = uniform(rng) * bound;
  }
  const int64_t steps_per_epoch = 47, total_steps = 47 * 4;  // 3000 samples, batches of 64
  const auto config = coppice::SparsifierConfig()
                          .method("cgap")
                          .sparsity(0.9)
                          .total_steps(total_steps)
                          .steps_per_epoch(steps_per_epoch)
                          .seed(7);
  coppice::Sparsifier sparsifier(config);
  for (Weights& l : layers) sparsifier.add_parameter(l.name, l.w.data(), {l.out, l.in}, l.g.data());
  sparsifier.start();
  size_t resets = 0;
  for (int64_t step = 0; step < total_steps; ++step) {
    for (Weights& l : layers)
      for (float& g : l.g) g = 0.5f * uniform(rng);
    sparsifier.mask_gradients();
    for (Weights& l : layers)
      for (size_t i = 0; i < l.w.size(); ++i)
        l.v[i] = 0.9f * l.v[i] + l.g[i], l.w[i] -= 0.05f * l.v[i];
    if (sparsifier.step())
      for (Weights& l : layers) {
        const std::vector<uint8_t> changed = sparsifier.changed_mask(l.name);
        for (size_t i = 0; i < changed.size(); ++i)
          if (changed[i]) l.v[i] = 0, ++resets;
      }
  }
  expect(resets > 0, "C-GaP changed masks during the host's loop");

  for (const Weights& l : layers) {
    const std::vector<uint8_t> mask = sparsifier.mask(l.name);
    const long long n = static_cast<long long>(l.w.size());
    const long long expected = std::llround(static_cast<double>(n) * 0.9);
    long long masked = 0, masked_nonzero = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      masked += mask[i] == 0;
      masked_nonzero += mask[i] == 0 && l.w[i] != 0;
    }
    const double exact_sparsity = static_cast<double>(expected) / static_cast<double>(n);
    expect(masked == expected && masked_nonzero == 0 &&
               std::fabs(sparsifier.sparsity(l.name) - exact_sparsity) < 1e-12,
           l.name + ": exactly round(n*0.9) = " + std::to_string(expected) + " zeros, " +
               std::to_string(masked) + " masked, " + std::to_string(masked_nonzero) +
               " masked non-zeros");
  }

  const std::string path = temp_path("host-loop.state").string();
  sparsifier.save(path);
  {
    coppice::Sparsifier resumed(config);
    for (Weights& l : layers)
      resumed.add_parameter(l.name, l.w.data(), {l.out, l.in}, l.g.data());
    resumed.load(path);
    bool same = resumed.steps() == sparsifier.steps() && resumed.phase() == sparsifier.phase();
    for (const Weights& l : layers) same = same && resumed.mask(l.name) == sparsifier.mask(l.name);
    expect(same, "save/load into a fresh sparsifier: same steps, phase and masks");
  }
  std::filesystem::remove(path);

  // SpMM, transposed SpMM and SDDMM of fc1 under its mask, X = 784 × 256.
  const Weights& l = layers[0];
  const std::vector<uint8_t> mask = sparsifier.mask(l.name);
  const size_t rows = static_cast<size_t>(l.out), cols = static_cast<size_t>(l.in), n = 256;
  std::vector<float> x(cols * n), y_ref(rows * n, 0.0f), dx_ref(cols * n, 0.0f),
      dw_ref(rows * cols);
  for (float& v : x) v = uniform(rng);
  reference_products(l.w.data(), mask.data(), rows, cols, x.data(), n, y_ref.data(),
                     dx_ref.data(), dw_ref.data());
  const coppice::SparseMatrix w(l.out, l.in, l.w, mask);
  const auto kept = std::count_if(mask.begin(), mask.end(), [](uint8_t m) { return m != 0; });
  expect(w.nnz() == kept, "SparseMatrix nnz of a 90% sparse 64×784 layer = kept weights");
  const std::vector<float> y = w.spmm(x), dx = w.spmm_transposed(y_ref), dw = w.sddmm(y_ref, x);
  expect(reference_relative_error(y.data(), y_ref.data(), y.size()) < 1e-4f,
         "spmm on 256 columns agrees with plain loops");
  expect(reference_relative_error(dx.data(), dx_ref.data(), dx.size()) < 1e-4f,
         "spmm_transposed agrees with plain loops");
  expect(reference_relative_error(dw.data(), dw_ref.data(), dw.size()) < 1e-4f,
         "sddmm agrees with plain loops");
}

void sparse_matrix() {
  // W = [[1 0 2], [0 3 0]] (2×3); X = 3×2.
  const std::vector<float> w = {1, 0, 2, 0, 3, 0}, x = {1, 2, 3, 4, 5, 6};
  const coppice::SparseMatrix m(2, 3, w);
  expect(m.nnz() == 3 && m.rows() == 2 && m.cols() == 3, "nnz of the non-zeros");
  expect(m.spmm(x) == std::vector<float>({11, 14, 9, 12}), "spmm");
  const std::vector<float> dy = {1, 0, 0, 1};
  expect(m.spmm_transposed(dy) == std::vector<float>({1, 0, 0, 3, 2, 0}), "spmm_transposed");
  expect(m.sddmm(dy, x) == std::vector<float>({1, 0, 5, 0, 4, 0}), "sddmm");
  std::vector<float> y(4, 1.0f);
  m.spmm(2, x.data(), y.data(), 1.0f);
  expect(y == std::vector<float>({12, 15, 10, 13}), "spmm with beta = 1");

  const coppice::SparseMatrix masked(2, 3, w, std::vector<uint8_t>{1, 1, 0, 0, 0, 0});
  expect(masked.nnz() == 2, "explicit mask keeps masked-in zeros");
  coppice::SparseMatrix updatable(2, 3, w);
  updatable.update(std::vector<float>{2, 0, 4, 0, 6, 0});
  expect(updatable.spmm(x) == std::vector<float>({22, 28, 18, 24}), "update");

  expect_error(COPPICE_SHAPE_MISMATCH, "dense of the wrong size",
               [] { coppice::SparseMatrix bad(2, 3, std::vector<float>(5)); });
  expect_error(COPPICE_SHAPE_MISMATCH, "mask of the wrong size", [&] {
    coppice::SparseMatrix bad(2, 3, w, std::vector<uint8_t>(2));
  });
  expect_error(COPPICE_SHAPE_MISMATCH, "x not a multiple of cols",
               [&] { (void)m.spmm(std::vector<float>(4)); });
  expect_error(COPPICE_SHAPE_MISMATCH, "x of sddmm of the wrong size",
               [&] { (void)m.sddmm(dy, std::vector<float>(3)); });
  expect_error(COPPICE_INVALID_ARGUMENT, "negative rows",
               [] { coppice::SparseMatrix bad(-1, 3, nullptr); });
  expect_error(COPPICE_INVALID_ARGUMENT, "null x", [&] {
    std::vector<float> out(4);
    m.spmm(2, nullptr, out.data());
  });
}

void sparse_layers() {
  // A fixed-mask linear layer W = [[1 0 2], [0 3 0]] (mask drops W[0][2]) on x = [[1 2 3]].
  const std::vector<float> w = {1, 0, 2, 0, 3, 0};
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 1};
  coppice::SparseLinear linear(2, 3, w.data(), mask.data());
  const std::vector<float> x = {1, 2, 3}, bias = {0.5f, -1};
  std::vector<float> y(2);
  linear.forward(x.data(), 1, bias.data(), y.data());
  expect(y == std::vector<float>({1.5f, 5}), "linear forward uses the mask and the bias");
  const std::vector<float> dy = {1, 2};
  std::vector<float> dx(3), dw(6), db(2);
  linear.backward(x.data(), dy.data(), 1, dx.data(), dw.data(), db.data());
  expect(dx == std::vector<float>({1, 6, 0}), "linear input gradient");
  expect(dw == std::vector<float>({1, 2, 0, 2, 4, 6}), "linear weight gradient 0 outside the mask");
  expect(db == std::vector<float>({1, 2}), "linear bias gradient");
  expect(!linear.plan(1).forward_sparse, "a 2×3 product stays dense");

  // A 1×1×3×3 convolution (identity kernel, padding 1) reproduces its input.
  const int64_t shape[4] = {1, 1, 3, 3};
  std::vector<float> k(9, 0.0f);
  k[4] = 1;
  const std::vector<uint8_t> keep(9, 1);
  coppice::SparseConv2d conv(shape, k.data(), keep.data(), 1, 1);
  expect(conv.output_size(4, 5) == std::pair<int64_t, int64_t>(4, 5), "conv output size");
  std::vector<float> image(20), out(20);
  std::iota(image.begin(), image.end(), 1.0f);
  conv.forward(image.data(), 1, 4, 5, nullptr, out.data());
  expect(out == image, "identity convolution");

  // Bound to a sparsifier's parameter: the layer follows the mask.
  std::vector<float> weights(40 * 30, 1.0f), grads(40 * 30);
  coppice::Sparsifier s(coppice::SparsifierConfig().method("static").sparsity(0.5).total_steps(4));
  s.add_parameter("fc", weights.data(), {40, 30}, grads.data());
  coppice::SparseLinear bound(s, "fc");
  s.start();
  std::vector<float> ones(30, 1.0f), row(40);
  bound.forward(ones.data(), 1, nullptr, row.data());
  expect(std::accumulate(row.begin(), row.end(), 0.0f) == 600.0f, "bound layer sums the kept half");
  expect_error(COPPICE_NOT_FOUND, "unknown parameter", [&] { coppice::SparseLinear bad(s, "nope"); });
  expect_error(COPPICE_SHAPE_MISMATCH, "conv over a rank-2 parameter",
               [&] { coppice::SparseConv2d bad(s, "fc"); });
  expect_error(COPPICE_INVALID_ARGUMENT, "zero batch",
               [&] { linear.forward(x.data(), 0, nullptr, y.data()); });
  coppice::SparseLinear moved = std::move(linear);
  expect_error(COPPICE_INVALID_STATE, "moved-from layer",
               [&] { linear.forward(x.data(), 1, nullptr, y.data()); });
  expect(static_cast<bool>(moved), "moved-to layer is live");
}

void engine() {
  // A synthetic 2-class task: class = whether the upper half is brighter than the lower.
  const int count = 128, h = 28, wd = 28;
  std::vector<float> images(static_cast<size_t>(count) * h * wd);
  std::vector<int32_t> labels(count);
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  const size_t pixels = static_cast<size_t>(h * wd);
  for (size_t i = 0; i < labels.size(); ++i) {
    labels[i] = static_cast<int32_t>(i % 2);
    for (size_t p = 0; p < pixels; ++p)
      images[i * pixels + p] = noise(rng) + ((p < pixels / 2) == (labels[i] == 1) ? 1.0f : -1.0f);
  }
  coppice::Dataset data(images, labels, h, wd, 2);
  expect(data.size() == count, "dataset size");

  expect_error(COPPICE_SHAPE_MISMATCH, "images of the wrong size",
               [&] { coppice::Dataset bad(std::vector<float>(10), labels, h, wd, 2); });
  expect_error(COPPICE_INVALID_ARGUMENT, "label out of range", [&] {
    std::vector<int32_t> bad_labels = labels;
    bad_labels[5] = 7;
    coppice::Dataset bad(images, bad_labels, h, wd, 2);
  });
  expect_error(COPPICE_INVALID_ARGUMENT, "NaN pixel", [&] {
    std::vector<float> bad_images = images;
    bad_images[17] = std::numeric_limits<float>::quiet_NaN();
    coppice::Dataset bad(bad_images, labels, h, wd, 2);
  });
  expect_error(COPPICE_IO_ERROR, "load_idx from a missing directory",
               [] { coppice::Dataset::load_idx("train", 10, "/nonexistent-coppice-dir"); });
  expect_error(COPPICE_NOT_FOUND, "unknown model", [] { coppice::Model m("no-such-model"); });

  coppice::Model model("mlp", 1, 2);
  expect(model.parameter_count() > 0 && model.classes() == 2, "model");

  int epochs_seen = 0;
  auto config = coppice::TrainConfig().epochs(3).batch_size(32).learning_rate(0.02f);
  config.sparsity().method("static").sparsity(0.5);
  config.on_epoch([&](const coppice::EpochReport& e) {
    ++epochs_seen;
    expect(e.epoch >= 0 && std::isfinite(e.train_loss) && e.sparsity > 0.4, "epoch report");
  });
  const coppice::TrainResult result = coppice::train(model, data, data, config);
  expect(result.epochs == 3 && epochs_seen == 3, "train runs every epoch");
  expect(result.test_accuracy > 90.0, "synthetic task learnt (" +
                                          std::to_string(result.test_accuracy) + "%)");
  expect(std::fabs(coppice::evaluate(model, data) - result.test_accuracy) < 1e-9,
         "evaluate agrees with train");

  config.on_epoch([](const coppice::EpochReport&) { return true; });  // stop after one epoch
  expect(model.train(data, data, config).epochs == 1, "epoch callback can stop training");

  config.on_epoch([](const coppice::EpochReport&) -> bool { throw std::logic_error("boom"); });
  bool rethrown = false;
  try {
    model.train(data, data, config);
  } catch (const std::logic_error& e) {
    rethrown = std::string(e.what()) == "boom";
  }
  expect(rethrown, "an exception in the epoch callback is rethrown by train");

  auto bad_config = coppice::TrainConfig().epochs(1).optimizer("nonsense");
  expect_error(COPPICE_INVALID_ARGUMENT, "unknown optimizer",
               [&] { model.train(data, data, bad_config); });
  coppice::Dataset wrong_shape(std::vector<float>(4 * 4 * 16), std::vector<int32_t>{0, 1, 0, 1},
                               4, 16, 2);
  // coppice.h says INVALID_ARGUMENT; the library reports SHAPE_MISMATCH.
  expect_error(
      COPPICE_INVALID_ARGUMENT, "data not of the model's input shape",
      [&] { model.train(wrong_shape, data, coppice::TrainConfig().epochs(1)); },
      COPPICE_SHAPE_MISMATCH);

  const std::vector<float> logits = coppice::predict(model, images);
  expect(logits.size() == static_cast<size_t>(count) * 2, "predict size");
  {
    // A C-GaP model at 90%: train's accuracy = evaluate = the argmax of predict's logits.
    coppice::Model sparse("mlp", 1, 2);
    auto cgap = coppice::TrainConfig().epochs(4).batch_size(32).learning_rate(0.02f);
    cgap.sparsity().method("cgap").sparsity(0.9).rounds(1);
    const coppice::TrainResult trained = coppice::train(sparse, data, data, cgap);
    const std::vector<float> z = coppice::predict(sparse, images);
    int64_t correct = 0;
    for (size_t i = 0; i < labels.size(); ++i)
      correct += (z[2 * i + 1] > z[2 * i]) == (labels[i] == 1);
    const double predicted = 100.0 * static_cast<double>(correct) / count;
    const double evaluated = coppice::evaluate(sparse, data);
    expect(std::fabs(evaluated - predicted) <= 0.2 &&
               std::fabs(evaluated - trained.test_accuracy) <= 1e-6,
           "C-GaP model: train " + std::to_string(trained.test_accuracy) + "%, evaluate " +
               std::to_string(evaluated) + "%, argmax of predict " + std::to_string(predicted) +
               "% agree");
  }
  expect_error(COPPICE_SHAPE_MISMATCH, "predict of a partial image",
               [&] { (void)model.predict(std::vector<float>(100)); });
  expect_error(COPPICE_SHAPE_MISMATCH, "predict into a short logits buffer", [&] {
    std::vector<float> out(3);
    model.predict(images.data(), 2, h, wd, out.data(), 3);
  });

  // checkpoints, export, inspect
  const std::filesystem::path dir_path =
      std::filesystem::temp_directory_path() / "coppice-hpp-checkpoints";
  std::filesystem::remove_all(dir_path);
  const std::string dir = dir_path.string();
  auto plain = coppice::TrainConfig().epochs(2).batch_size(32).learning_rate(0.02f);
  plain.sparsity().method("static").sparsity(0.5);
  coppice::Model checkpointed("mlp", 1, 2);
  checkpointed.train(data, data, plain, coppice::Checkpoints{dir, 1, 3, false});
  const std::string report = coppice::inspect(dir + "/checkpoint-000000004.safetensors");
  expect(report.find("\"kind\":\"checkpoint\"") != std::string::npos, "inspect a checkpoint");
  coppice::Model resumed("mlp", 1, 2);
  expect(resumed.train(data, data, plain, coppice::Checkpoints{dir, 1, 3, true}).epochs == 2,
         "resume a finished run");
  const coppice::ExportSize size = checkpointed.export_sparse(dir + "/export.safetensors");
  expect(size.bytes > 0 && size.bytes < size.dense_bytes, "export is smaller than dense");
  coppice::Model loaded("mlp", 7, 2);
  loaded.load(dir + "/export.safetensors");
  const std::vector<float> expected = checkpointed.predict(images);
  const std::vector<float> got = loaded.predict(images);
  bool same = got.size() == expected.size();
  for (size_t i = 0; same && i < got.size(); ++i) same = std::fabs(got[i] - expected[i]) < 1e-4f;
  expect(same, "export loads back and predicts the same");
  expect_error(COPPICE_INVALID_FILE, "inspect a non-safetensors file",
               [&] { (void)coppice::inspect("/proc/self/cmdline"); });
  expect_error(COPPICE_INVALID_ARGUMENT, "checkpoints without a directory",
               [&] { checkpointed.train(data, data, plain, coppice::Checkpoints{}); });
  std::filesystem::remove_all(dir_path);

  coppice::Dataset moved = std::move(data);
  expect_error(COPPICE_INVALID_STATE, "dataset after move", [&] { (void)data.size(); });
  expect_error(COPPICE_INVALID_STATE, "moved-from dataset passed to evaluate",
               [&] { (void)model.evaluate(data); });
  expect(moved.size() == count, "moved-to dataset");
}

void logging() {
  std::vector<std::string> lines;
  coppice::set_log_callback([&](coppice::LogLevel, const std::string& message) {
    lines.push_back(message);
  });
  std::vector<float> w(100, 1.0f);
  {
    coppice::Sparsifier s(coppice::SparsifierConfig().method("cgap").total_steps(10));
    s.add_parameter("w", w.data(), {10, 10});
    s.start();
    for (int i = 0; i < 10; ++i) s.step();
  }
  expect(!lines.empty(), "log callback receives schedule events");
  coppice::set_log_callback([](coppice::LogLevel, const std::string&) {
    throw std::runtime_error("a log callback that throws");
  });
  {
    coppice::Sparsifier s(coppice::SparsifierConfig().method("cgap").total_steps(10));
    s.add_parameter("w", w.data(), {10, 10});
    s.start();  // must not terminate the process
  }
  coppice::set_log_callback(nullptr);
  expect(true, "a throwing log callback is contained");
}

}  // namespace

int main() {
  library();
  sparsifier_config();
  sparsifier();
  host_training_loop();
  sparse_matrix();
  sparse_layers();
  engine();
  logging();
  std::printf("coppice.hpp: %d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
