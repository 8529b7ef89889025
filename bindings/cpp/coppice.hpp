// coppice.hpp — header-only C++17 RAII wrappers over the C interface of Coppice (coppice.h).
//
//   #include <coppice.hpp>      // link with -lcoppice (pkg-config coppice)
//
// Conventions
//  - Every failing C call becomes a coppice::Error (a std::runtime_error) carrying the
//    coppice_status and the library's coppice_last_error() message.
//  - Handle classes (Sparsifier, SparseMatrix, Model, Dataset) own one C handle each. They are
//    move-only; their destructors call the matching coppice_*_destroy and never throw. Using a
//    moved-from object throws coppice::Error with status COPPICE_INVALID_STATE.
//  - Buffers the host passes stay owned by the host. Sparsifier::add_parameter keeps the
//    *pointers* (as coppice.h says): the weight and gradient buffers must stay valid and must
//    not move (e.g. no std::vector reallocation) until the Sparsifier is destroyed.
//  - Thread-safety is that of coppice.h: one thread at a time per object; different objects
//    are independent. set_log_callback is process-wide; set it before creating handles.
//  - Callbacks (epoch, log) run inside library calls. Exceptions they throw never cross the C
//    boundary: an epoch callback's exception stops training and is rethrown by train(); a log
//    callback's exception is swallowed.
#ifndef COPPICE_HPP
#define COPPICE_HPP

#include <coppice.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace coppice {

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A failed Coppice call: the status code, and the library's message for it.
/// what() is "STATUS_NAME: message", with the call's name in front unless the message already
/// starts with it (the library's messages usually do).
class Error : public std::runtime_error {
 public:
  Error(coppice_status status, const std::string& message, const std::string& call = {})
      : std::runtime_error(describe(status, message, call)),
        status_(status),
        message_(message),
        call_(call) {}

  /// The coppice_status of the failed call (never COPPICE_OK).
  coppice_status status() const noexcept { return status_; }
  /// The stable name of the status, e.g. "COPPICE_NOT_FOUND".
  const char* status_name() const noexcept { return coppice_status_name(status_); }
  /// The message coppice_last_error() gave right after the failure.
  const std::string& message() const noexcept { return message_; }
  /// The C function (or wrapper) that failed, e.g. "coppice_sparsifier_start".
  const std::string& call() const noexcept { return call_; }

 private:
  static std::string describe(coppice_status status, const std::string& message,
                              const std::string& call) {
    std::string text = coppice_status_name(status);
    if (!call.empty() && message.compare(0, call.size(), call) != 0) text = call + ": " + text;
    return message.empty() ? text : text + ": " + message;
  }

  coppice_status status_;
  std::string message_;
  std::string call_;
};

namespace detail {

/// Throws coppice::Error when `status` is not COPPICE_OK; `call` names the C function.
inline void check(coppice_status status, const char* call) {
  if (status == COPPICE_OK) return;
  const char* message = coppice_last_error();
  throw Error(status, message != nullptr ? message : "", call);
}

[[noreturn]] inline void moved_from(const char* type) {
  throw Error(COPPICE_INVALID_STATE, std::string(type) + " is empty (moved from)", type);
}

[[noreturn]] inline void shape_error(const char* call, const std::string& message) {
  throw Error(COPPICE_SHAPE_MISMATCH, message, call);
}

/// s as a C string; a string with an embedded NUL byte would be cut there silently (another
/// file, another parameter), so it is refused.
inline const char* c_string(const std::string& s) {
  const std::size_t nul = s.find('\0');
  if (nul != std::string::npos)
    throw Error(COPPICE_INVALID_ARGUMENT,
                "a path or name contains a NUL byte at position " + std::to_string(nul),
                "coppice.hpp");
  return s.c_str();
}

inline const char* c_str_or_null(const std::optional<std::string>& s) {
  return s ? c_string(*s) : nullptr;
}

inline std::optional<std::string> from_c_str(const char* s) {
  if (s == nullptr) return std::nullopt;
  return std::string(s);
}

/// Owns one C handle; `Destroy` must accept NULL (as every coppice *_destroy does).
template <class T, void (*Destroy)(T*)>
class Handle {
 public:
  Handle() noexcept = default;
  explicit Handle(T* pointer) noexcept : pointer_(pointer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : pointer_(std::exchange(other.pointer_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      Destroy(pointer_);
      pointer_ = std::exchange(other.pointer_, nullptr);
    }
    return *this;
  }
  ~Handle() { Destroy(pointer_); }

  T* get() const noexcept { return pointer_; }
  T* release() noexcept { return std::exchange(pointer_, nullptr); }
  explicit operator bool() const noexcept { return pointer_ != nullptr; }

 private:
  T* pointer_ = nullptr;
};

inline int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Library-wide calls
// ---------------------------------------------------------------------------------------------

/// The loaded library's version, "MAJOR.MINOR.PATCH".
inline std::string version() { return coppice_version(); }
/// The loaded library's COPPICE_VERSION_NUMBER.
inline int version_number() noexcept { return coppice_version_number(); }
/// True when the loaded library is the version this header was compiled against.
inline bool version_matches() noexcept {
  return coppice_version_number() == COPPICE_VERSION_NUMBER;
}

/// Kernel threads, process-wide (>= 1; 0: all cores). Throws on a negative count.
inline void set_threads(int threads) {
  detail::check(coppice_set_threads(threads), "coppice_set_threads");
}
inline int threads() noexcept { return coppice_get_threads(); }

/// Log levels of the log callback.
enum class LogLevel : int { debug = 0, info = 1, warning = 2 };

using LogCallback = std::function<void(LogLevel level, const std::string& message)>;

namespace detail {
struct LogState {
  std::mutex mutex;
  LogCallback callback;
};
inline LogState& log_state() {
  static LogState state;
  return state;
}
inline void log_trampoline(int level, const char* message, void* /*user_data*/) {
  try {
    LogState& state = log_state();
    LogCallback callback;
    {
      std::lock_guard<std::mutex> lock(state.mutex);
      callback = state.callback;
    }
    if (callback) callback(static_cast<LogLevel>(level), message != nullptr ? message : "");
  } catch (...) {
    // Never let an exception cross the C boundary.
  }
}
}  // namespace detail

/// Process-wide log callback (schedule events etc.); an empty function stops logging.
/// Set it before creating handles (as coppice_set_log_callback says).
inline void set_log_callback(LogCallback callback) {
  detail::LogState& state = detail::log_state();
  bool enable = static_cast<bool>(callback);
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    state.callback = std::move(callback);
  }
  coppice_set_log_callback(enable ? &detail::log_trampoline : nullptr, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Sparsifier configuration
// ---------------------------------------------------------------------------------------------

/// coppice_sparsifier_config as a value type with a builder interface. A default-constructed
/// config holds the library's defaults (coppice_sparsifier_config_init); setters return *this:
///
///   auto config = coppice::SparsifierConfig().method("cgap").sparsity(0.9).total_steps(1000);
///
/// Strings are owned by the object, so copies are independent. A string option the library
/// leaves unset (NULL: "use the default") reads back as "" (distribution: std::nullopt).
class SparsifierConfig {
 public:
  SparsifierConfig() {
    coppice_sparsifier_config_init(&c_);
    adopt_strings();
  }
  /// Copies a C config (its strings are copied too).
  explicit SparsifierConfig(const coppice_sparsifier_config& c) : c_(c) { adopt_strings(); }

  SparsifierConfig& method(std::string value) { method_ = std::move(value); return *this; }
  SparsifierConfig& sparsity(double value) { c_.sparsity = value; return *this; }
  /// "uniform", "erk"; std::nullopt (or "") for the method's default.
  SparsifierConfig& distribution(std::optional<std::string> value) {
    distribution_ = (value && value->empty()) ? std::nullopt : std::move(value);
    return *this;
  }
  SparsifierConfig& erk_power(double value) { c_.erk_power = value; return *this; }
  SparsifierConfig& keep_first_dense(bool value) {
    c_.keep_first_dense = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& keep_last_dense(bool value) {
    c_.keep_last_dense = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& total_steps(int64_t value) { c_.total_steps = value; return *this; }
  SparsifierConfig& steps_per_epoch(int64_t value) { c_.steps_per_epoch = value; return *this; }
  SparsifierConfig& partitions(int value) { c_.partitions = value; return *this; }
  /// "flops" or "parameters".
  SparsifierConfig& partition_balance(std::string value) {
    balance_ = std::move(value);
    return *this;
  }
  SparsifierConfig& gap_step_length(int64_t value) { c_.gap_step_length = value; return *this; }
  SparsifierConfig& rounds(int value) { c_.rounds = value; return *this; }
  SparsifierConfig& update_interval(int64_t value) { c_.update_interval = value; return *this; }
  SparsifierConfig& drop_fraction(double value) { c_.drop_fraction = value; return *this; }
  SparsifierConfig& prune_step(int64_t value) { c_.prune_step = value; return *this; }
  SparsifierConfig& seed(uint64_t value) { c_.seed = value; return *this; }
  /// GaP prunes: "layer" (default) or "global" (non-uniform GaP).
  SparsifierConfig& gap_prune(std::string value) { gap_prune_ = std::move(value); return *this; }
  SparsifierConfig& global_magnitude(bool value) {
    c_.global_magnitude = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& reset_optimizer_state(bool value) {
    c_.reset_optimizer_state = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& restart_optimizer_per_step(bool value) {
    c_.restart_optimizer_per_step = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& restart_lr_per_step(bool value) {
    c_.restart_lr_per_step = value ? 1 : 0;
    return *this;
  }
  SparsifierConfig& restart_warmup_per_step(bool value) {
    c_.restart_warmup_per_step = value ? 1 : 0;
    return *this;
  }
  /// P-GaP merge in coppice_train: "average" (default) or "partition".
  SparsifierConfig& pgap_merge(std::string value) { pgap_merge_ = std::move(value); return *this; }
  SparsifierConfig& initial_sparsity(double value) { c_.initial_sparsity = value; return *this; }
  SparsifierConfig& pruning_begin_step(int64_t value) {
    c_.pruning_begin_step = value;
    return *this;
  }
  SparsifierConfig& pruning_end_step(int64_t value) { c_.pruning_end_step = value; return *this; }
  SparsifierConfig& pruning_frequency(int64_t value) {
    c_.pruning_frequency = value;
    return *this;
  }
  /// "constant" or "cosine"; std::nullopt (or "") for the method's default.
  SparsifierConfig& drop_fraction_decay(std::optional<std::string> value) {
    decay_ = (value && value->empty()) ? std::nullopt : std::move(value);
    return *this;
  }
  SparsifierConfig& update_end_fraction(double value) {
    c_.update_end_fraction = value;
    return *this;
  }
  SparsifierConfig& reference_mask_updates(bool value) {
    c_.reference_mask_updates = value ? 1 : 0;
    return *this;
  }
  /// coppice_train only: linear learning-rate warm-up over the first epochs (and of every GaP
  /// restart with restart_lr_per_step and restart_warmup_per_step).
  SparsifierConfig& warmup_epochs(int value) {
    c_.warmup_epochs = value;
    return *this;
  }

  std::string method() const { return method_.value_or(std::string()); }
  double sparsity() const noexcept { return c_.sparsity; }
  std::optional<std::string> distribution() const { return distribution_; }
  double erk_power() const noexcept { return c_.erk_power; }
  bool keep_first_dense() const noexcept { return c_.keep_first_dense != 0; }
  bool keep_last_dense() const noexcept { return c_.keep_last_dense != 0; }
  int64_t total_steps() const noexcept { return c_.total_steps; }
  int64_t steps_per_epoch() const noexcept { return c_.steps_per_epoch; }
  int partitions() const noexcept { return c_.partitions; }
  std::string partition_balance() const { return balance_.value_or(std::string()); }
  int64_t gap_step_length() const noexcept { return c_.gap_step_length; }
  int rounds() const noexcept { return c_.rounds; }
  int64_t update_interval() const noexcept { return c_.update_interval; }
  double drop_fraction() const noexcept { return c_.drop_fraction; }
  int64_t prune_step() const noexcept { return c_.prune_step; }
  uint64_t seed() const noexcept { return c_.seed; }
  std::string gap_prune() const { return gap_prune_.value_or(std::string()); }
  bool global_magnitude() const noexcept { return c_.global_magnitude != 0; }
  bool reset_optimizer_state() const noexcept { return c_.reset_optimizer_state != 0; }
  bool restart_optimizer_per_step() const noexcept { return c_.restart_optimizer_per_step != 0; }
  bool restart_lr_per_step() const noexcept { return c_.restart_lr_per_step != 0; }
  bool restart_warmup_per_step() const noexcept { return c_.restart_warmup_per_step != 0; }
  int warmup_epochs() const noexcept { return c_.warmup_epochs; }
  std::string pgap_merge() const { return pgap_merge_.value_or(std::string()); }
  double initial_sparsity() const noexcept { return c_.initial_sparsity; }
  int64_t pruning_begin_step() const noexcept { return c_.pruning_begin_step; }
  int64_t pruning_end_step() const noexcept { return c_.pruning_end_step; }
  int64_t pruning_frequency() const noexcept { return c_.pruning_frequency; }
  std::optional<std::string> drop_fraction_decay() const { return decay_; }
  double update_end_fraction() const noexcept { return c_.update_end_fraction; }
  bool reference_mask_updates() const noexcept { return c_.reference_mask_updates != 0; }

  /// The C struct; its string pointers point into this object (valid while it lives unchanged).
  coppice_sparsifier_config c() const noexcept {
    coppice_sparsifier_config out = c_;
    out.method = detail::c_str_or_null(method_);
    out.distribution = detail::c_str_or_null(distribution_);
    out.partition_balance = detail::c_str_or_null(balance_);
    out.gap_prune = detail::c_str_or_null(gap_prune_);
    out.pgap_merge = detail::c_str_or_null(pgap_merge_);
    out.drop_fraction_decay = detail::c_str_or_null(decay_);
    return out;
  }

 private:
  void adopt_strings() {
    method_ = detail::from_c_str(c_.method);
    distribution_ = detail::from_c_str(c_.distribution);
    balance_ = detail::from_c_str(c_.partition_balance);
    gap_prune_ = detail::from_c_str(c_.gap_prune);
    pgap_merge_ = detail::from_c_str(c_.pgap_merge);
    decay_ = detail::from_c_str(c_.drop_fraction_decay);
    c_.method = c_.distribution = c_.partition_balance = nullptr;
    c_.gap_prune = c_.pgap_merge = c_.drop_fraction_decay = nullptr;
  }

  coppice_sparsifier_config c_{};
  std::optional<std::string> method_, distribution_, balance_, gap_prune_, pgap_merge_, decay_;
};

// ---------------------------------------------------------------------------------------------
// Sparsifier: sparse training on weights the host owns
// ---------------------------------------------------------------------------------------------

/// The host's training loop, every optimizer step:
///
///   backward();  sparsifier.mask_gradients();
///   optimizer_step();
///   if (sparsifier.step()) for each parameter: zero optimizer moments where
///                                              sparsifier.changed_mask(name) is 1
class Sparsifier {
 public:
  explicit Sparsifier(const SparsifierConfig& config) {
    coppice_sparsifier_config c = config.c();
    coppice_sparsifier* out = nullptr;
    detail::check(coppice_sparsifier_create(&c, &out), "coppice_sparsifier_create");
    handle_ = Handle(out);
  }

  /// Registers a float32 row-major weight buffer (and optionally its gradient buffer, same
  /// size) before start(). The buffers are not copied: they must outlive the Sparsifier and
  /// must not move. `flops_per_weight` (<= 0: 2) weights FLOP-balanced GaP partitions.
  void add_parameter(const std::string& name, float* weights, std::vector<int64_t> shape,
                     float* gradients = nullptr, double flops_per_weight = 0) {
    detail::check(coppice_sparsifier_add_parameter(get(), detail::c_string(name), weights, shape.data(),
                                                   static_cast<int>(shape.size()), gradients,
                                                   flops_per_weight),
                  "coppice_sparsifier_add_parameter");
    counts_[name] = detail::element_count(shape);
  }

  /// add_parameter over vectors the library checks against `shape` (a raw pointer cannot be:
  /// a buffer shorter than the shape would have neighbouring memory masked and trained).
  void add_parameter(const std::string& name, std::vector<float>& weights,
                     std::vector<int64_t> shape, std::vector<float>* gradients = nullptr,
                     double flops_per_weight = 0) {
    const int64_t count = detail::element_count(shape);
    if (static_cast<int64_t>(weights.size()) != count ||
        (gradients != nullptr && static_cast<int64_t>(gradients->size()) != count))
      throw Error(COPPICE_INVALID_ARGUMENT,
                  "'" + name + "': the buffers hold " + std::to_string(weights.size()) +
                      (gradients ? "/" + std::to_string(gradients->size()) : std::string()) +
                      " floats, the shape needs " + std::to_string(count),
                  "coppice_sparsifier_add_parameter");
    add_parameter(name, weights.data(), std::move(shape),
                  gradients ? gradients->data() : nullptr, flops_per_weight);
  }

  /// Puts parameter `name` into GaP partition `partition` (explicit partitions, before start).
  void set_partition(const std::string& name, int partition) {
    detail::check(coppice_sparsifier_set_partition(get(), detail::c_string(name), partition),
                  "coppice_sparsifier_set_partition");
  }

  /// Explicit partitions as text: "a,b;c" (',' within, ';' between partitions), before start.
  void set_partition_list(const std::string& partitions) {
    detail::check(coppice_sparsifier_set_partition_list(get(), detail::c_string(partitions)),
                  "coppice_sparsifier_set_partition_list");
  }
  /// Per-layer sparsity table entry (before start; then every parameter needs one).
  void set_layer_sparsity(const std::string& name, double sparsity) {
    detail::check(coppice_sparsifier_set_layer_sparsity(get(), detail::c_string(name), sparsity),
                  "coppice_sparsifier_set_layer_sparsity");
  }
  /// Puts `name` into `block`: balanced GaP partitions never split a block (before start).
  void set_block(const std::string& name, const std::string& block) {
    detail::check(coppice_sparsifier_set_block(get(), detail::c_string(name), detail::c_string(block)),
                  "coppice_sparsifier_set_block");
  }

  /// GaP partitions as they took effect (0 for other methods).
  int partition_count() const {
    int out = 0;
    detail::check(coppice_sparsifier_partition_count(get(), &out),
                  "coppice_sparsifier_partition_count");
    return out;
  }
  /// The GaP partition of `name`, -1 when it is in none.
  int partition_of(const std::string& name) const {
    int out = -1;
    detail::check(coppice_sparsifier_partition_of(get(), detail::c_string(name), &out),
                  "coppice_sparsifier_partition_of");
    return out;
  }
  /// Whether masks can no longer change.
  bool masks_frozen() const {
    return flag(coppice_sparsifier_masks_frozen, "coppice_sparsifier_masks_frozen");
  }
  /// Whether to skip the optimizer step of the coming step (reference_mask_updates).
  bool skips_optimizer_step() const {
    return flag(coppice_sparsifier_skips_optimizer_step,
                "coppice_sparsifier_skips_optimizer_step");
  }
  /// Whether the last step() ended a GaP step (restart optimizer / learning rate there).
  bool ended_gap_step() const {
    return flag(coppice_sparsifier_ended_gap_step, "coppice_sparsifier_ended_gap_step");
  }

  /// A structured event (coppice_sparsifier_event, strings copied).
  struct Event {
    int kind = 0;               ///< COPPICE_EVENT_*
    std::string kind_name;      ///< "start", "prune", "grow", "final_prune", ...
    int64_t step = 0;
    int partition = -1;         ///< -1: none
    std::vector<std::string> layers;
    double sparsity = 0;
  };
  /// The next event not yet read, or std::nullopt.
  std::optional<Event> next_event() {
    coppice_sparsifier_event e{};
    e.struct_size = sizeof(e);
    int has = 0;
    detail::check(coppice_sparsifier_next_event(get(), &e, &has),
                  "coppice_sparsifier_next_event");
    if (has == 0) return std::nullopt;
    Event out;
    out.kind = e.kind;
    out.kind_name = e.kind_name != nullptr ? e.kind_name : "";
    out.step = e.step;
    out.partition = e.partition;
    out.sparsity = e.sparsity;
    std::string all = e.layers != nullptr ? e.layers : "";
    size_t begin = 0;
    while (!all.empty()) {
      size_t end = all.find(',', begin);
      out.layers.push_back(all.substr(begin, end == std::string::npos ? end : end - begin));
      if (end == std::string::npos) break;
      begin = end + 1;
    }
    return out;
  }

  /// Applies the initial masks (masked weights become zero).
  void start() { detail::check(coppice_sparsifier_start(get()), "coppice_sparsifier_start"); }

  /// After backward: zeroes the gradients at masked positions.
  void mask_gradients() {
    detail::check(coppice_sparsifier_mask_gradients(get()), "coppice_sparsifier_mask_gradients");
  }

  /// After the optimizer step: re-applies masks, grows/prunes on schedule. True if any mask
  /// changed (then see changed_mask()).
  bool step() {
    int changed = 0;
    detail::check(coppice_sparsifier_step(get(), &changed), "coppice_sparsifier_step");
    return changed != 0;
  }

  /// True when the coming step needs dense gradients (RigL update steps).
  bool needs_dense_gradients() const {
    int out = 0;
    detail::check(coppice_sparsifier_needs_dense_gradients(get(), &out),
                  "coppice_sparsifier_needs_dense_gradients");
    return out != 0;
  }

  /// The mask of parameter `name` (1 = kept), one byte per weight.
  std::vector<uint8_t> mask(const std::string& name) const {
    std::vector<uint8_t> out(static_cast<size_t>(count_of(name, "coppice_sparsifier_get_mask")));
    mask(name, out.data(), static_cast<int64_t>(out.size()));
    return out;
  }
  void mask(const std::string& name, uint8_t* out, int64_t count) const {
    detail::check(coppice_sparsifier_get_mask(get(), detail::c_string(name), out, count),
                  "coppice_sparsifier_get_mask");
  }

  /// 1 where `name`'s mask changed in the last start()/step() (zero optimizer moments there).
  std::vector<uint8_t> changed_mask(const std::string& name) const {
    std::vector<uint8_t> out(
        static_cast<size_t>(count_of(name, "coppice_sparsifier_changed_mask")));
    changed_mask(name, out.data(), static_cast<int64_t>(out.size()));
    return out;
  }
  void changed_mask(const std::string& name, uint8_t* out, int64_t count) const {
    detail::check(coppice_sparsifier_changed_mask(get(), detail::c_string(name), out, count),
                  "coppice_sparsifier_changed_mask");
  }

  /// Sparsity of parameter `name`.
  double sparsity(const std::string& name) const { return sparsity_of(detail::c_string(name)); }
  /// Sparsity over all registered parameters.
  double sparsity() const { return sparsity_of(nullptr); }

  int parameter_count() const {
    int out = 0;
    detail::check(coppice_sparsifier_parameter_count(get(), &out),
                  "coppice_sparsifier_parameter_count");
    return out;
  }
  /// Completed optimizer steps.
  int64_t steps() const {
    int64_t out = 0;
    detail::check(coppice_sparsifier_steps(get(), &out), "coppice_sparsifier_steps");
    return out;
  }
  /// Element count of a registered parameter (as given to add_parameter).
  int64_t element_count(const std::string& name) const {
    return count_of(name, "coppice::Sparsifier::element_count");
  }
  /// Names of the registered parameters (sorted).
  std::vector<std::string> parameter_names() const {
    std::vector<std::string> names;
    for (const auto& entry : counts_) names.push_back(entry.first);
    return names;
  }

  /// What the schedule is doing, e.g. "C-GaP round 1/2, partition 3 dense" or "fine-tune".
  std::string phase() const {
    const char* p = coppice_sparsifier_phase(get());
    return p != nullptr ? std::string(p) : std::string();
  }

  /// Saves the state (masks, step counter, schedule) atomically to `path`.
  void save(const std::string& path) const {
    detail::check(coppice_sparsifier_save(get(), detail::c_string(path)), "coppice_sparsifier_save");
  }
  /// Restores a saved state, instead of start(), into a sparsifier with the same config and
  /// parameters.
  void load(const std::string& path) {
    detail::check(coppice_sparsifier_load(get(), detail::c_string(path)), "coppice_sparsifier_load");
  }

  /// The C handle (still owned by this object), or NULL when moved from.
  coppice_sparsifier* handle() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

 private:
  using Handle = detail::Handle<coppice_sparsifier, coppice_sparsifier_destroy>;

  bool flag(coppice_status (*function)(const coppice_sparsifier*, int*), const char* what) const {
    int out = 0;
    detail::check(function(get(), &out), what);
    return out != 0;
  }

  coppice_sparsifier* get() const {
    if (!handle_) detail::moved_from("coppice::Sparsifier");
    return handle_.get();
  }
  int64_t count_of(const std::string& name, const char* call) const {
    get();
    auto it = counts_.find(name);
    if (it == counts_.end()) throw Error(COPPICE_NOT_FOUND, "unknown parameter " + name, call);
    return it->second;
  }
  double sparsity_of(const char* name) const {
    double out = 0;
    detail::check(coppice_sparsifier_sparsity(get(), name, &out), "coppice_sparsifier_sparsity");
    return out;
  }

  Handle handle_;
  std::map<std::string, int64_t> counts_;
};

// ---------------------------------------------------------------------------------------------
// Sparse layers: a host's own linear and convolution layers on the sparse kernels
// ---------------------------------------------------------------------------------------------

/// Which kernels a layer ran (or would run): the sparse ones (true) or dense OpenBLAS (false).
struct LayerExecution {
  bool forward_sparse = false;
  bool backward_sparse = false;
};

namespace detail {
/// What SparseLinear and SparseConv2d share: the handle and the execution report.
class LayerBase {
 public:
  /// Whether the last forward / backward ran on the sparse kernels.
  LayerExecution execution() const {
    int forward = 0, backward = 0;
    check(coppice_layer_execution(get(), &forward, &backward), "coppice_layer_execution");
    return {forward != 0, backward != 0};
  }
  /// The C handle (still owned by this object), or NULL when moved from.
  coppice_layer* handle() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

 protected:
  using LayerHandle = Handle<coppice_layer, coppice_layer_destroy>;
  coppice_layer* get() const {
    if (!handle_) moved_from("coppice layer");
    return handle_.get();
  }
  LayerExecution plan(int64_t batch, int64_t height, int64_t width) const {
    int forward = 0, backward = 0;
    check(coppice_layer_plan(get(), batch, height, width, &forward, &backward),
          "coppice_layer_plan");
    return {forward != 0, backward != 0};
  }
  LayerHandle handle_;
};
}  // namespace detail

/// y = x·Wᵀ + b with W [out, in], on the sparse kernels where they pay (coppice_layer_linear_*).
/// Bound to a parameter registered with a Sparsifier (its mask follows the schedule) or to a
/// fixed mask. Move-only; one thread at a time.
class SparseLinear : public detail::LayerBase {
 public:
  /// Bound to `name` ([out, in]) of `sparsifier` (the layer keeps what it needs of it, so
  /// either may be destroyed first).
  SparseLinear(Sparsifier& sparsifier, const std::string& name) {
    coppice_layer* out = nullptr;
    detail::check(coppice_layer_linear_create(sparsifier.handle(), detail::c_string(name), &out),
                  "coppice_layer_linear_create");
    handle_ = LayerHandle(out);
  }
  /// Fixed mask: `weights` ([out, in], host-owned, read at every forward) and `mask` (copied).
  SparseLinear(int64_t out_features, int64_t in_features, const float* weights,
               const uint8_t* mask) {
    coppice_layer* out = nullptr;
    detail::check(
        coppice_layer_linear_create_masked(out_features, in_features, weights, mask, &out),
        "coppice_layer_linear_create_masked");
    handle_ = LayerHandle(out);
  }

  /// y [batch, out] = x [batch, in]·Wᵀ + bias (bias [out] or nullptr).
  void forward(const float* x, int64_t batch, const float* bias, float* y) {
    detail::check(coppice_layer_linear_forward(get(), x, batch, bias, y),
                  "coppice_layer_linear_forward");
  }
  /// After forward(x): dx [batch, in], dw [out, in] (kept positions only), db [out]; any may
  /// be nullptr.
  void backward(const float* x, const float* dy, int64_t batch, float* dx, float* dw,
                float* db) {
    detail::check(coppice_layer_linear_backward(get(), x, dy, batch, dx, dw, db),
                  "coppice_layer_linear_backward");
  }
  /// What forward/backward of `batch` rows would run at the current masks.
  LayerExecution plan(int64_t batch) const { return LayerBase::plan(batch, 0, 0); }
};

/// y = conv2d(x, W) + b (NCHW input, OIHW weight, equal stride and padding on both axes),
/// like SparseLinear (coppice_layer_conv2d_*).
class SparseConv2d : public detail::LayerBase {
 public:
  SparseConv2d(Sparsifier& sparsifier, const std::string& name, int stride = 1, int padding = 0) {
    const coppice_conv2d_params params = make_params(stride, padding);
    coppice_layer* out = nullptr;
    detail::check(coppice_layer_conv2d_create(sparsifier.handle(), detail::c_string(name), &params, &out),
                  "coppice_layer_conv2d_create");
    handle_ = LayerHandle(out);
  }
  /// Fixed mask over OIHW `shape` (weights host-owned, mask copied).
  SparseConv2d(const int64_t shape[4], const float* weights, const uint8_t* mask, int stride = 1,
               int padding = 0) {
    const coppice_conv2d_params params = make_params(stride, padding);
    coppice_layer* out = nullptr;
    detail::check(coppice_layer_conv2d_create_masked(shape, weights, mask, &params, &out),
                  "coppice_layer_conv2d_create_masked");
    handle_ = LayerHandle(out);
  }

  /// {out_height, out_width} for an input of height × width.
  std::pair<int64_t, int64_t> output_size(int64_t height, int64_t width) const {
    int64_t oh = 0, ow = 0;
    detail::check(coppice_layer_conv2d_output_size(get(), height, width, &oh, &ow),
                  "coppice_layer_conv2d_output_size");
    return {oh, ow};
  }
  /// y [batch, out, OH, OW] = conv2d(x [batch, in, height, width]) + bias (or nullptr).
  void forward(const float* x, int64_t batch, int64_t height, int64_t width, const float* bias,
               float* y) {
    detail::check(coppice_layer_conv2d_forward(get(), x, batch, height, width, bias, y),
                  "coppice_layer_conv2d_forward");
  }
  /// After forward(x): dx (like x), dw (OIHW, kept positions only), db [out]; any may be nullptr.
  void backward(const float* x, const float* dy, int64_t batch, int64_t height, int64_t width,
                float* dx, float* dw, float* db) {
    detail::check(
        coppice_layer_conv2d_backward(get(), x, dy, batch, height, width, dx, dw, db),
        "coppice_layer_conv2d_backward");
  }
  LayerExecution plan(int64_t batch, int64_t height, int64_t width) const {
    return LayerBase::plan(batch, height, width);
  }

 private:
  static coppice_conv2d_params make_params(int stride, int padding) {
    coppice_conv2d_params params;
    coppice_conv2d_params_init(&params);
    params.stride_h = params.stride_w = stride;
    params.pad_h = params.pad_w = padding;
    return params;
  }
};

// ---------------------------------------------------------------------------------------------
// SparseMatrix: the runtime's sparse kernels on host buffers
// ---------------------------------------------------------------------------------------------

/// W (rows×cols, sparse). X is cols×n, Y and dY rows×n, dX cols×n; row-major float32 with n
/// contiguous. The vector overloads derive n from the sizes and return new vectors.
class SparseMatrix {
 public:
  /// From dense (rows×cols) under mask (rows×cols bytes, non-zero = kept; nullptr: keep the
  /// non-zero entries). Both are copied.
  SparseMatrix(int64_t rows, int64_t cols, const float* dense, const uint8_t* mask = nullptr)
      : rows_(rows), cols_(cols) {
    coppice_sparse_matrix* out = nullptr;
    detail::check(coppice_sparse_matrix_create(rows, cols, dense, mask, &out),
                  "coppice_sparse_matrix_create");
    handle_ = Handle(out);
  }
  /// Vector form; an empty mask keeps the non-zero entries of dense.
  SparseMatrix(int64_t rows, int64_t cols, const std::vector<float>& dense,
               const std::vector<uint8_t>& mask = {})
      : rows_(rows), cols_(cols) {
    const char* call = "coppice_sparse_matrix_create";
    if (rows < 0 || cols < 0 || dense.size() != static_cast<size_t>(rows * cols))
      detail::shape_error(call, "dense has " + std::to_string(dense.size()) +
                                    " values, expected rows*cols = " +
                                    std::to_string(rows * cols));
    if (!mask.empty() && mask.size() != dense.size())
      detail::shape_error(call, "mask has " + std::to_string(mask.size()) +
                                    " entries, expected " + std::to_string(dense.size()));
    coppice_sparse_matrix* out = nullptr;
    detail::check(coppice_sparse_matrix_create(rows, cols, dense.data(),
                                               mask.empty() ? nullptr : mask.data(), &out),
                  call);
    handle_ = Handle(out);
  }

  int64_t rows() const noexcept { return rows_; }
  int64_t cols() const noexcept { return cols_; }

  /// Number of kept entries.
  int64_t nnz() const {
    int64_t out = 0;
    detail::check(coppice_sparse_matrix_nnz(get(), &out), "coppice_sparse_matrix_nnz");
    return out;
  }

  /// Refreshes the stored values from dense (rows×cols), keeping the mask.
  void update(const float* dense) {
    detail::check(coppice_sparse_matrix_update(get(), dense), "coppice_sparse_matrix_update");
  }
  void update(const std::vector<float>& dense) {
    expect(dense.size(), rows_ * cols_, "coppice_sparse_matrix_update", "dense");
    update(dense.data());
  }

  /// y (rows×n) = W·x (cols×n) + beta·y.
  void spmm(int64_t n, const float* x, float* y, float beta = 0.0f) const {
    detail::check(coppice_spmm(get(), n, x, beta, y), "coppice_spmm");
  }
  std::vector<float> spmm(const std::vector<float>& x) const {
    int64_t n = columns_of(x, cols_, "coppice_spmm", "x");
    std::vector<float> y(static_cast<size_t>(rows_ * n));
    spmm(n, x.data(), y.data());
    return y;
  }

  /// dx (cols×n) = Wᵀ·dy (rows×n) + beta·dx.
  void spmm_transposed(int64_t n, const float* dy, float* dx, float beta = 0.0f) const {
    detail::check(coppice_spmm_transposed(get(), n, dy, beta, dx), "coppice_spmm_transposed");
  }
  std::vector<float> spmm_transposed(const std::vector<float>& dy) const {
    int64_t n = columns_of(dy, rows_, "coppice_spmm_transposed", "dy");
    std::vector<float> dx(static_cast<size_t>(cols_ * n));
    spmm_transposed(n, dy.data(), dx.data());
    return dx;
  }

  /// dw (rows×cols, dense) = dy·xᵀ at the kept positions, 0 elsewhere.
  void sddmm(int64_t n, const float* dy, const float* x, float* dw) const {
    detail::check(coppice_sddmm(get(), n, dy, x, dw), "coppice_sddmm");
  }
  std::vector<float> sddmm(const std::vector<float>& dy, const std::vector<float>& x) const {
    int64_t n = columns_of(dy, rows_, "coppice_sddmm", "dy");
    expect(x.size(), cols_ * n, "coppice_sddmm", "x");
    std::vector<float> dw(static_cast<size_t>(rows_ * cols_));
    sddmm(n, dy.data(), x.data(), dw.data());
    return dw;
  }

  coppice_sparse_matrix* handle() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

 private:
  using Handle = detail::Handle<coppice_sparse_matrix, coppice_sparse_matrix_destroy>;

  coppice_sparse_matrix* get() const {
    if (!handle_) detail::moved_from("coppice::SparseMatrix");
    return handle_.get();
  }
  static void expect(size_t size, int64_t expected, const char* call, const char* what) {
    if (size != static_cast<size_t>(expected))
      detail::shape_error(call, std::string(what) + " has " + std::to_string(size) +
                                    " values, expected " + std::to_string(expected));
  }
  static int64_t columns_of(const std::vector<float>& v, int64_t leading, const char* call,
                            const char* what) {
    if (leading <= 0 || v.size() % static_cast<size_t>(leading) != 0)
      detail::shape_error(call, std::string(what) + " has " + std::to_string(v.size()) +
                                    " values, not a multiple of " + std::to_string(leading));
    return static_cast<int64_t>(v.size() / static_cast<size_t>(leading));
  }

  Handle handle_;
  int64_t rows_ = 0, cols_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The engine: datasets, models, training
// ---------------------------------------------------------------------------------------------

/// A dataset held by the runtime (copied in from arrays, or loaded from IDX files).
class Dataset {
 public:
  /// Copies `count` images of height×width floats and their int32 labels in [0, classes).
  Dataset(const float* images, const int32_t* labels, int64_t count, int height, int width,
          int classes) {
    create(images, labels, count, height, width, classes);
  }
  /// Vector form: count = labels.size(); images.size() must be count·height·width.
  Dataset(const std::vector<float>& images, const std::vector<int32_t>& labels, int height,
          int width, int classes) {
    int64_t count = static_cast<int64_t>(labels.size());
    if (height < 0 || width < 0 ||
        images.size() != static_cast<size_t>(count * height * width))
      detail::shape_error("coppice_dataset_create",
                          "images has " + std::to_string(images.size()) + " values, expected " +
                              std::to_string(count) + " x " + std::to_string(height) + " x " +
                              std::to_string(width));
    create(images.data(), labels.data(), count, height, width, classes);
  }

  /// Fashion-MNIST-style IDX files: `split` is "train" or "t10k"; first `limit` samples
  /// (<= 0: all); `directory` empty: the default /usr/share/datasets/fashion-mnist.
  static Dataset load_idx(const std::string& split, int64_t limit = 0,
                          const std::string& directory = {}) {
    coppice_dataset* out = nullptr;
    detail::check(coppice_dataset_load_idx(directory.empty() ? nullptr : detail::c_string(directory),
                                           detail::c_string(split), limit, &out),
                  "coppice_dataset_load_idx");
    return Dataset(out);
  }

  /// Takes ownership of a C handle.
  static Dataset adopt(coppice_dataset* handle) noexcept { return Dataset(handle); }

  /// Number of samples.
  int64_t size() const {
    int64_t out = 0;
    detail::check(coppice_dataset_count(get(), &out), "coppice_dataset_count");
    return out;
  }

  coppice_dataset* handle() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

 private:
  using Handle = detail::Handle<coppice_dataset, coppice_dataset_destroy>;
  friend class Model;

  explicit Dataset(coppice_dataset* handle) noexcept : handle_(handle) {}

  void create(const float* images, const int32_t* labels, int64_t count, int height, int width,
              int classes) {
    coppice_dataset* out = nullptr;
    detail::check(coppice_dataset_create(images, labels, count, height, width, classes, &out),
                  "coppice_dataset_create");
    handle_ = Handle(out);
  }

  coppice_dataset* get() const {
    if (!handle_) detail::moved_from("coppice::Dataset");
    return handle_.get();
  }

  Handle handle_;
};

/// One coppice_epoch_callback call.
struct EpochReport {
  int epoch;
  double train_loss;
  double test_accuracy;  // percent
  double sparsity;
  double seconds;
};

/// The result of train(): coppice_train_result (test_accuracy in percent, sparsity,
/// train_seconds, epochs).
using TrainResult = coppice_train_result;

/// coppice_train_config as a value type with a builder interface; defaults are the
/// library's (coppice_train_config_init). The sparse-training part is a SparsifierConfig:
///
///   auto config = coppice::TrainConfig().epochs(3).learning_rate(0.05f);
///   config.sparsity().method("cgap").sparsity(0.9);
class TrainConfig {
 public:
  TrainConfig() {
    coppice_train_config_init(&c_);
    optimizer_ = detail::from_c_str(c_.optimizer);
    lr_schedule_ = detail::from_c_str(c_.lr_schedule);
    sparsity_ = SparsifierConfig(c_.sparsity);
    c_.optimizer = c_.lr_schedule = nullptr;
    c_.on_epoch = nullptr;
    c_.user_data = nullptr;
  }

  TrainConfig& epochs(int value) { c_.epochs = value; return *this; }
  TrainConfig& batch_size(int value) { c_.batch_size = value; return *this; }
  TrainConfig& learning_rate(float value) { c_.learning_rate = value; return *this; }
  /// "sgd" or "adamw".
  TrainConfig& optimizer(std::string value) { optimizer_ = std::move(value); return *this; }
  TrainConfig& momentum(float value) { c_.momentum = value; return *this; }
  TrainConfig& weight_decay(float value) { c_.weight_decay = value; return *this; }
  /// "cosine" or "constant".
  TrainConfig& lr_schedule(std::string value) { lr_schedule_ = std::move(value); return *this; }
  TrainConfig& seed(uint64_t value) { c_.seed = value; return *this; }
  TrainConfig& sparsity(SparsifierConfig value) { sparsity_ = std::move(value); return *this; }

  /// Called after every epoch with an EpochReport. The callback may return void, or bool:
  /// true stops training early (as a non-zero return of coppice_epoch_callback does).
  template <class F>
  TrainConfig& on_epoch(F callback) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, const EpochReport&>>) {
      on_epoch_ = [callback](const EpochReport& r) mutable {
        callback(r);
        return false;
      };
    } else {
      on_epoch_ = [callback](const EpochReport& r) mutable {
        return static_cast<bool>(callback(r));
      };
    }
    return *this;
  }

  int epochs() const noexcept { return c_.epochs; }
  int batch_size() const noexcept { return c_.batch_size; }
  float learning_rate() const noexcept { return c_.learning_rate; }
  std::string optimizer() const { return optimizer_.value_or(std::string()); }
  float momentum() const noexcept { return c_.momentum; }
  float weight_decay() const noexcept { return c_.weight_decay; }
  std::string lr_schedule() const { return lr_schedule_.value_or(std::string()); }
  uint64_t seed() const noexcept { return c_.seed; }
  SparsifierConfig& sparsity() noexcept { return sparsity_; }
  const SparsifierConfig& sparsity() const noexcept { return sparsity_; }
  const std::function<bool(const EpochReport&)>& epoch_callback() const noexcept {
    return on_epoch_;
  }

  /// The C struct without callback; strings point into this object.
  coppice_train_config c() const noexcept {
    coppice_train_config out = c_;
    out.optimizer = detail::c_str_or_null(optimizer_);
    out.lr_schedule = detail::c_str_or_null(lr_schedule_);
    out.sparsity = sparsity_.c();
    return out;
  }

 private:
  coppice_train_config c_{};
  std::optional<std::string> optimizer_, lr_schedule_;
  SparsifierConfig sparsity_;
  std::function<bool(const EpochReport&)> on_epoch_;
};

/// Where and how often coppice_train_checkpointed writes checkpoints.
struct Checkpoints {
  std::string directory;
  int every_epochs = 1;
  int keep = 3;
  /// Continue from the newest checkpoint in `directory` (same settings and data).
  bool resume = false;
};

/// Sizes reported by Model::export_sparse.
struct ExportSize {
  int64_t bytes;
  int64_t dense_bytes;
};

/// A model built and run by the runtime.
class Model {
 public:
  /// A reference model: "mlp", "cnn" or "resnet20", for 1×28×28 inputs and `classes` outputs.
  explicit Model(const std::string& name, uint64_t seed = 0, int classes = 10)
      : classes_(classes) {
    coppice_model* out = nullptr;
    detail::check(coppice_model_create(detail::c_string(name), seed, classes, &out), "coppice_model_create");
    handle_ = Handle(out);
  }

  /// Number of trainable parameters.
  int64_t parameter_count() const {
    int64_t out = 0;
    detail::check(coppice_model_parameter_count(get(), &out), "coppice_model_parameter_count");
    return out;
  }
  /// Number of outputs (as given to the constructor).
  int classes() const noexcept { return classes_; }

  /// Trains on `train`, evaluating on `test` after every epoch; with `checkpoints`, writes
  /// (and can resume from) checkpoints.
  TrainResult train(const Dataset& train, const Dataset& test, const TrainConfig& config,
                    const std::optional<Checkpoints>& checkpoints = std::nullopt) {
    struct Context {
      const std::function<bool(const EpochReport&)>* callback;
      std::exception_ptr error;
    } context{&config.epoch_callback(), nullptr};

    coppice_train_config c = config.c();
    if (config.epoch_callback()) {
      c.on_epoch = &Model::epoch_trampoline<Context>;
      c.user_data = &context;
    }
    TrainResult result{};
    coppice_status status;
    if (checkpoints) {
      coppice_checkpoint_config k;
      coppice_checkpoint_config_init(&k);
      k.directory = detail::c_string(checkpoints->directory);
      k.every_epochs = checkpoints->every_epochs;
      k.keep = checkpoints->keep;
      k.resume = checkpoints->resume ? 1 : 0;
      status = coppice_train_checkpointed(get(), train.get(), test.get(), &c, &k, &result);
    } else {
      status = coppice_train(get(), train.get(), test.get(), &c, &result);
    }
    if (context.error) std::rethrow_exception(context.error);
    detail::check(status, checkpoints ? "coppice_train_checkpointed" : "coppice_train");
    return result;
  }

  /// Saves parameters and statistics (safetensors, atomic).
  void save(const std::string& path) const {
    detail::check(coppice_model_save(get(), detail::c_string(path)), "coppice_model_save");
  }
  /// Loads a file of save(), a checkpoint or an export (masks are attached: sparse kernels).
  void load(const std::string& path) {
    detail::check(coppice_model_load(get(), detail::c_string(path)), "coppice_model_load");
  }
  /// Writes the model for inference with sparse weights in CSR form.
  ExportSize export_sparse(const std::string& path) const {
    ExportSize size{0, 0};
    detail::check(coppice_model_export(get(), detail::c_string(path), &size.bytes, &size.dense_bytes),
                  "coppice_model_export");
    return size;
  }

  /// Accuracy on `data`, in percent.
  double evaluate(const Dataset& data) {
    double out = 0;
    detail::check(coppice_evaluate(get(), data.get(), &out), "coppice_evaluate");
    return out;
  }

  /// Logits (count × classes) of `count` images of height×width floats.
  void predict(const float* images, int64_t count, int height, int width, float* logits,
               int64_t logits_count) {
    detail::check(coppice_predict(get(), images, count, height, width, logits, logits_count),
                  "coppice_predict");
  }
  std::vector<float> predict(const std::vector<float>& images, int height = 28, int width = 28) {
    int64_t pixels = static_cast<int64_t>(height) * width;
    if (pixels <= 0 || images.size() % static_cast<size_t>(pixels) != 0)
      detail::shape_error("coppice_predict",
                          "images has " + std::to_string(images.size()) +
                              " values, not a multiple of " + std::to_string(pixels));
    int64_t count = static_cast<int64_t>(images.size()) / pixels;
    std::vector<float> logits(static_cast<size_t>(count * classes_));
    predict(images.data(), count, height, width, logits.data(),
            static_cast<int64_t>(logits.size()));
    return logits;
  }

  coppice_model* handle() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

 private:
  using Handle = detail::Handle<coppice_model, coppice_model_destroy>;

  coppice_model* get() const {
    if (!handle_) detail::moved_from("coppice::Model");
    return handle_.get();
  }

  template <class Context>
  static int epoch_trampoline(int epoch, double train_loss, double test_accuracy,
                              double sparsity, double seconds, void* user_data) {
    auto* context = static_cast<Context*>(user_data);
    try {
      return (*context->callback)(
                 EpochReport{epoch, train_loss, test_accuracy, sparsity, seconds})
                 ? 1
                 : 0;
    } catch (...) {
      context->error = std::current_exception();
      return 1;  // stop training; train() rethrows
    }
  }

  Handle handle_;
  int classes_ = 0;
};

/// Free-function forms of the engine calls.
inline TrainResult train(Model& model, const Dataset& train_data, const Dataset& test_data,
                         const TrainConfig& config) {
  return model.train(train_data, test_data, config);
}
inline double evaluate(Model& model, const Dataset& data) { return model.evaluate(data); }

/// coppice_file_inspect: what a Coppice file holds, as JSON.
inline std::string inspect(const std::string& path) {
  size_t needed = 0;
  coppice_status status = coppice_file_inspect(detail::c_string(path), nullptr, 0, &needed);
  if (status != COPPICE_SHAPE_MISMATCH) detail::check(status, "coppice_file_inspect");
  std::string json(needed, '\0');
  detail::check(coppice_file_inspect(detail::c_string(path), json.data(), json.size(), &needed),
                "coppice_file_inspect");
  json.resize(needed > 0 ? needed - 1 : 0);
  return json;
}
inline std::vector<float> predict(Model& model, const std::vector<float>& images,
                                  int height = 28, int width = 28) {
  return model.predict(images, height, width);
}

}  // namespace coppice

#endif  // COPPICE_HPP
