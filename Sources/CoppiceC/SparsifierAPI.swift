// coppice_sparsifier_*: sparse training on weights the host owns.
import CCoppiceABI
import Coppice
import Foundation

/// The object behind a coppice_sparsifier handle: targets registered so far, then the engine's
/// Sparsifier once started.
final class SparsifierHandle {
  let config: SparsityConfig
  let totalSteps: Int
  let stepsPerEpoch: Int
  let seed: UInt64
  var targets: [SparseTarget] = []
  /// Explicit GaP partitions assigned by coppice_sparsifier_set_partition: name → partition.
  var assignedPartitions: [String: Int] = [:]
  /// Per-layer sparsities set by coppice_sparsifier_set_layer_sparsity.
  var layerSparsities: [String: Double] = [:]
  var sparsifier: Sparsifier?
  var phaseString: UnsafeMutablePointer<CChar>?
  /// Structured events read so far by coppice_sparsifier_next_event, and the layer list of
  /// the last one (owned here).
  var eventsRead = 0
  var eventLayers: UnsafeMutablePointer<CChar>?

  /// The configuration with what the set_* calls added: explicit partitions (every listed
  /// partition non-empty) and a per-layer sparsity table.
  func resolvedConfig() throws -> SparsityConfig {
    var config = self.config
    if !assignedPartitions.isEmpty {
      // Explicit partitions, members in registration order; every parameter must be in one
      // unless the distribution keeps it dense (the sparsifier names those that are not).
      let count = (assignedPartitions.values.max() ?? 0) + 1
      var lists = [[String]](repeating: [], count: count)
      for t in targets { if let p = assignedPartitions[t.name] { lists[p].append(t.name) } }
      if let empty = lists.firstIndex(where: \.isEmpty) {
        throw APIError(
          .invalidArgument, "partition \(empty) has no parameter (partitions 0..<\(count))")
      }
      config.partitions = .explicit(lists)
    }
    if !layerSparsities.isEmpty { config.distribution = .table(layerSparsities) }
    return config
  }

  init(config: SparsityConfig, totalSteps: Int, stepsPerEpoch: Int, seed: UInt64) {
    self.config = config
    self.totalSteps = totalSteps
    self.stepsPerEpoch = stepsPerEpoch
    self.seed = seed
  }

  private var names: [UnsafeMutablePointer<CChar>?] = []

  /// The index-th parameter's name as a C string owned by this handle.
  func name(at index: Int) -> UnsafePointer<CChar>? {
    while names.count < targets.count { names.append(strdup(targets[names.count].name)) }
    return UnsafePointer(names[index])
  }

  deinit {
    free(phaseString)
    free(eventLayers)
    for n in names { free(n) }
  }

  func started() throws -> Sparsifier {
    guard let sparsifier else {
      throw APIError(.invalidState, "call coppice_sparsifier_start first")
    }
    return sparsifier
  }

  /// The registered parameter called `name` (NOT_FOUND otherwise).
  func target(named name: UnsafePointer<CChar>?) throws -> SparseTarget {
    let n = try string(name, "name")
    guard let t = targets.first(where: { $0.name == n }) else {
      throw APIError(.notFound, "no parameter named '\(n)'")
    }
    return t
  }

  /// The registered parameter called `name`, checked against a host buffer of `count` values.
  func target(_ name: UnsafePointer<CChar>?, count: Int64) throws -> SparseTarget {
    let t = try target(named: name)
    let n = t.name
    guard count == Int64(t.count) else {
      throw APIError(
        .shapeMismatch, "parameter '\(n)' has \(t.count) elements, the buffer holds \(count)")
    }
    return t
  }
}

/// Static C strings for the defaults that `_init` functions report.
enum DefaultStrings {
  nonisolated(unsafe) static let cgap = UnsafePointer(strdup("cgap")!)
  nonisolated(unsafe) static let dense = UnsafePointer(strdup("dense")!)
  nonisolated(unsafe) static let flops = UnsafePointer(strdup("flops")!)
  nonisolated(unsafe) static let sgd = UnsafePointer(strdup("sgd")!)
  nonisolated(unsafe) static let cosine = UnsafePointer(strdup("cosine")!)
  nonisolated(unsafe) static let layer = UnsafePointer(strdup("layer")!)
  nonisolated(unsafe) static let average = UnsafePointer(strdup("average")!)
  /// Event kind names, by kind.
  nonisolated(unsafe) static let eventKinds: [Int32: UnsafePointer<CChar>] = Dictionary(
    uniqueKeysWithValues: SparsityEvent.Kind.allCases.map {
      ($0.rawValue, UnsafePointer(strdup($0.name)!))
    })
}

/// The C view of `SparsityConfig.defaults` (the one set of defaults of every front end), plus
/// the fields that only the C API has (total_steps and steps_per_epoch must be set; 0 means
/// "unset" for gap_step_length, -1 for prune_step).
func defaultSparsifierConfig() -> coppice_sparsifier_config {
  let d = SparsityConfig.defaults
  var c = coppice_sparsifier_config()
  c.struct_size = MemoryLayout<coppice_sparsifier_config>.size
  c.method = DefaultStrings.cgap
  c.sparsity = d.sparsity
  c.distribution = nil
  c.erk_power = SparsityDistribution.defaultERKPower
  c.keep_first_dense = d.keepFirstDense ? 1 : 0
  c.keep_last_dense = d.keepLastDense ? 1 : 0
  c.total_steps = 0
  c.steps_per_epoch = 0
  c.partitions = Int32(PartitionSpec.defaultCount)
  c.partition_balance = DefaultStrings.flops
  c.gap_step_length = Int64(d.gapStepLength ?? 0)
  c.rounds = Int32(d.rounds)
  c.update_interval = Int64(d.updateInterval)
  c.drop_fraction = d.dropFraction
  c.prune_step = Int64(d.pruneStep ?? -1)
  c.seed = 0
  c.gap_prune = DefaultStrings.layer
  c.global_magnitude = d.globalMagnitude ? 1 : 0
  c.reset_optimizer_state = d.resetOptimizerState ? 1 : 0
  c.restart_optimizer_per_step = d.restartOptimizerPerStep ? 1 : 0
  c.restart_lr_per_step = d.restartLearningRatePerStep ? 1 : 0
  c.restart_warmup_per_step = d.restartWarmupPerStep ? 1 : 0
  c.warmup_epochs = Int32(TrainingConfig().warmupEpochs)
  c.pgap_merge = DefaultStrings.average
  c.initial_sparsity = d.initialSparsity
  c.pruning_begin_step = Int64(d.pruningBeginStep ?? -1)
  c.pruning_end_step = Int64(d.pruningEndStep ?? -1)
  c.pruning_frequency = Int64(d.pruningFrequency)
  c.drop_fraction_decay = nil
  c.update_end_fraction = d.updateEndFraction
  c.reference_mask_updates = d.referenceMaskUpdates ? 1 : 0
  return c
}

/// Converts a C sparsifier config; `SparsityConfig.validate()` checks the ranges. Only what
/// the C representation adds is checked here: names, and the "unset" encodings.
func sparsityConfig(_ c: coppice_sparsifier_config) throws -> SparsityConfig {
  let methodName = c.method.map { String(cString: $0) } ?? SparsityConfig.defaults.method.rawValue
  let method: SparsityMethod
  do { method = try SparsityMethod(parsing: methodName) } catch {
    throw APIError(.invalidArgument, "\(error)")
  }
  var s = SparsityConfig(method: method, sparsity: c.sparsity)
  if let d = c.distribution.map({ String(cString: $0) }) {
    switch d {
    case "uniform": s.distribution = .uniform
    case "erk": s.distribution = .erk(power: c.erk_power)
    default: throw APIError(.invalidArgument, "unknown distribution '\(d)' (uniform, erk)")
    }
  }
  s.keepFirstDense = c.keep_first_dense != 0
  s.keepLastDense = c.keep_last_dense != 0
  let balanceName =
    c.partition_balance.map { String(cString: $0) } ?? PartitionSpec.defaultBalance.rawValue
  guard let balance = PartitionBalance(rawValue: balanceName) else {
    throw APIError(
      .invalidArgument, "unknown partition_balance '\(balanceName)' (flops, parameters)")
  }
  s.partitions = .balanced(count: Int(c.partitions), by: balance)
  guard c.gap_step_length >= 0 else {
    throw APIError(.invalidArgument, "gap_step_length must be >= 0, got \(c.gap_step_length)")
  }
  if c.gap_step_length > 0 { s.gapStepLength = Int(c.gap_step_length) }
  s.rounds = Int(c.rounds)
  s.updateInterval = Int(c.update_interval)
  s.dropFraction = c.drop_fraction
  if c.prune_step >= 0 { s.pruneStep = Int(c.prune_step) }
  func named<T: RawRepresentable & CaseIterable>(
    _ p: UnsafePointer<CChar>?, _ field: String, _ fallback: T
  ) throws -> T where T.RawValue == String {
    guard let p else { return fallback }
    let text = String(cString: p)
    guard let value = T(rawValue: text) else {
      throw APIError(
        .invalidArgument,
        "unknown \(field) '\(text)' (\(T.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return value
  }
  s.gapPrune = try named(c.gap_prune, "gap_prune", s.gapPrune)
  s.pgapMerge = try named(c.pgap_merge, "pgap_merge", s.pgapMerge)
  if let decay = c.drop_fraction_decay {
    s.dropFractionDecay = try named(decay, "drop_fraction_decay", DropFractionDecay.constant)
  }
  s.globalMagnitude = c.global_magnitude != 0
  s.resetOptimizerState = c.reset_optimizer_state != 0
  s.restartOptimizerPerStep = c.restart_optimizer_per_step != 0
  s.restartLearningRatePerStep = c.restart_lr_per_step != 0
  s.restartWarmupPerStep = c.restart_warmup_per_step != 0
  s.initialSparsity = c.initial_sparsity
  guard c.pruning_begin_step >= -1, c.pruning_end_step >= -1 else {
    throw APIError(.invalidArgument, "pruning_begin_step and pruning_end_step must be >= -1")
  }
  if c.pruning_begin_step >= 0 { s.pruningBeginStep = Int(c.pruning_begin_step) }
  if c.pruning_end_step >= 0 { s.pruningEndStep = Int(c.pruning_end_step) }
  guard c.pruning_frequency >= 1, c.pruning_frequency <= 1 << 40 else {
    throw APIError(
      .invalidArgument, "pruning_frequency must be in 1...2^40, got \(c.pruning_frequency)")
  }
  s.pruningFrequency = Int(c.pruning_frequency)
  s.updateEndFraction = c.update_end_fraction
  s.referenceMaskUpdates = c.reference_mask_updates != 0
  try s.validate()
  return s
}

@_cdecl("coppice_sparsifier_config_init")
public func cSparsifierConfigInit(_ config: UnsafeMutablePointer<coppice_sparsifier_config>?) {
  config?.pointee = defaultSparsifierConfig()
}

@_cdecl("coppice_sparsifier_create")
public func cSparsifierCreate(
  _ config: UnsafePointer<coppice_sparsifier_config>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_sparsifier_create") {
    let out = try output(out, "out")
    out.pointee = nil
    let c = try readConfig(config, defaults: defaultSparsifierConfig(), what: "config")
    guard c.total_steps >= 1, c.total_steps <= 1 << 40 else {
      throw APIError(.invalidArgument, "total_steps must be in 1...2^40, got \(c.total_steps)")
    }
    guard c.steps_per_epoch >= 0 else {
      throw APIError(.invalidArgument, "steps_per_epoch must be >= 0, got \(c.steps_per_epoch)")
    }
    let s = try sparsityConfig(c)
    guard c.gap_step_length <= c.total_steps else {
      throw APIError(
        .invalidArgument,
        "gap_step_length \(c.gap_step_length) is longer than total_steps \(c.total_steps)")
    }
    let handle = SparsifierHandle(
      config: s, totalSteps: Int(c.total_steps),
      stepsPerEpoch: c.steps_per_epoch > 0 ? Int(c.steps_per_epoch) : Int(c.total_steps),
      seed: c.seed)
    out.pointee = Handles.register(handle)
  }
}

@_cdecl("coppice_sparsifier_destroy")
public func cSparsifierDestroy(_ handle: OpaquePointer?) {
  Handles.destroy(handle, as: SparsifierHandle.self)
}

@_cdecl("coppice_sparsifier_add_parameter")
public func cSparsifierAddParameter(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ weights: UnsafeMutablePointer<Float>?,
  _ shape: UnsafePointer<Int64>?, _ rank: Int32, _ gradients: UnsafeMutablePointer<Float>?,
  _ flopsPerWeight: Double
) -> Int32 {
  guarded("coppice_sparsifier_add_parameter") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    guard h.sparsifier == nil else {
      throw APIError(.invalidState, "parameters must be added before coppice_sparsifier_start")
    }
    let n = try string(name, "name")
    guard !n.isEmpty else { throw APIError(.invalidArgument, "name is empty") }
    guard let weights else { throw APIError(.invalidArgument, "weights of '\(n)' is NULL") }
    guard let shape else { throw APIError(.invalidArgument, "shape of '\(n)' is NULL") }
    guard rank >= 1, rank <= 8 else {
      throw APIError(.invalidArgument, "rank of '\(n)' must be in 1...8, got \(rank)")
    }
    var dims: [Int] = []
    var total: Int64 = 1
    for i in 0..<Int(rank) {
      let d = shape[i]
      guard d >= 1, d <= Int64(Int32.max) else {
        throw APIError(.invalidArgument, "dimension \(i) of '\(n)' is \(d); must be >= 1")
      }
      total = total.multipliedReportingOverflow(by: d).overflow ? Int64.max : total * d
      guard total < Int64(Int32.max) else {
        throw APIError(.invalidArgument, "'\(n)' has too many elements (limit 2^31 − 1)")
      }
      dims.append(Int(d))
    }
    guard !h.targets.contains(where: { $0.name == n }) else {
      throw APIError(.invalidArgument, "a parameter named '\(n)' is already registered")
    }
    guard flopsPerWeight <= SparseTarget.maxFlopsPerWeight else {
      throw APIError(
        .invalidArgument,
        "flops_per_weight must be at most \(SparseTarget.maxFlopsPerWeight) (<= 0: 2), got \(flopsPerWeight)"
      )
    }
    // Two parameters over the same (or overlapping) memory would mask each other's weights
    // and report sparsities the buffers do not have.
    func range(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> Range<UInt> {
      let start = UInt(bitPattern: p)
      return start..<(start + UInt(count) * UInt(MemoryLayout<Float>.stride))
    }
    let mine = range(weights, Int(total))
    let grads = gradients.map { range($0, Int(total)) }
    if let grads, grads.overlaps(mine) {
      throw APIError(.invalidArgument, "the gradients of '\(n)' overlap its weights")
    }
    for t in h.targets {
      let theirs = [range(t.weights, t.count)] + (t.gradients.map { [range($0, t.count)] } ?? [])
      if theirs.contains(where: { $0.overlaps(mine) || (grads?.overlaps($0) ?? false) }) {
        throw APIError(
          .invalidArgument, "the buffers of '\(n)' overlap those of parameter '\(t.name)'")
      }
    }
    h.targets.append(
      try SparseTarget(
        name: n, shape: dims, weights: weights, gradients: gradients,
        flopsPerWeight: flopsPerWeight > 0 ? flopsPerWeight : 2))
  }
}

@_cdecl("coppice_sparsifier_start")
public func cSparsifierStart(_ handle: OpaquePointer?) -> Int32 {
  guarded("coppice_sparsifier_start") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    guard h.sparsifier == nil else { throw APIError(.invalidState, "already started") }
    guard !h.targets.isEmpty else { throw APIError(.invalidState, "no parameters registered") }
    let config = try h.resolvedConfig()
    let s = try Sparsifier(
      targets: h.targets, config: config, stepsPerEpoch: h.stepsPerEpoch,
      totalSteps: h.totalSteps, seed: h.seed)
    try s.start()
    h.sparsifier = s
    for e in s.events { Log.emit(1, e) }
  }
}

@_cdecl("coppice_sparsifier_set_partition")
public func cSparsifierSetPartition(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ partition: Int32
) -> Int32 {
  guarded("coppice_sparsifier_set_partition") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    guard h.sparsifier == nil else {
      throw APIError(.invalidState, "partitions must be set before coppice_sparsifier_start")
    }
    let n = try h.target(named: name).name
    guard partition >= 0, partition < Int32(SparsityConfig.maxPartitions) else {
      throw APIError(
        .invalidArgument,
        "partition must be in 0..<\(SparsityConfig.maxPartitions), got \(partition)")
    }
    h.assignedPartitions[n] = Int(partition)
  }
}

@_cdecl("coppice_sparsifier_mask_gradients")
public func cSparsifierMaskGradients(_ handle: OpaquePointer?) -> Int32 {
  guarded("coppice_sparsifier_mask_gradients") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    try h.started().maskGradients()
  }
}

@_cdecl("coppice_sparsifier_step")
public func cSparsifierStep(_ handle: OpaquePointer?, _ changed: UnsafeMutablePointer<Int32>?)
  -> Int32
{
  guarded("coppice_sparsifier_step") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let did = try h.started().step()
    changed?.pointee = did ? 1 : 0
    for e in try h.started().lastEvents { Log.emit(1, e) }
  }
}

@_cdecl("coppice_sparsifier_needs_dense_gradients")
public func cSparsifierNeedsDenseGradients(
  _ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_sparsifier_needs_dense_gradients") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let out = try output(out, "out")
    out.pointee = try h.started().needsDenseGradients ? 1 : 0
  }
}

@_cdecl("coppice_sparsifier_get_mask")
public func cSparsifierGetMask(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ mask: UnsafeMutablePointer<UInt8>?,
  _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_get_mask") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    _ = try h.started()
    let t = try h.target(name, count: count)
    let out = try output(mask, "mask")
    t.mask.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: t.count) }
  }
}

@_cdecl("coppice_sparsifier_changed_mask")
public func cSparsifierChangedMask(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ mask: UnsafeMutablePointer<UInt8>?,
  _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_changed_mask") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let s = try h.started()
    let t = try h.target(name, count: count)
    let out = try output(mask, "out")
    out.update(repeating: 0, count: t.count)
    guard let index = h.targets.firstIndex(where: { $0 === t }), index < s.lastChanges.count
    else { return }
    for i in s.lastChanges[index].all { out[i] = 1 }
  }
}

@_cdecl("coppice_sparsifier_sparsity")
public func cSparsifierSparsity(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Double>?
) -> Int32 {
  guarded("coppice_sparsifier_sparsity") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let s = try h.started()
    let out = try output(out, "out")
    if name == nil {
      out.pointee = s.report.sparsity
    } else {
      out.pointee = try h.target(named: name).sparsity
    }
  }
}

@_cdecl("coppice_sparsifier_parameter_info")
public func cSparsifierParameterInfo(
  _ handle: OpaquePointer?, _ index: Int32, _ name: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
  _ count: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_sparsifier_parameter_info") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    guard index >= 0, Int(index) < h.targets.count else {
      throw APIError(.notFound, "parameter index \(index) outside 0..<\(h.targets.count)")
    }
    name?.pointee = h.name(at: Int(index))
    count?.pointee = Int64(h.targets[Int(index)].count)
  }
}

@_cdecl("coppice_sparsifier_parameter_count")
public func cSparsifierParameterCount(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?)
  -> Int32
{
  guarded("coppice_sparsifier_parameter_count") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    try output(out, "out").pointee = Int32(h.targets.count)
  }
}

@_cdecl("coppice_sparsifier_steps")
public func cSparsifierSteps(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32
{
  guarded("coppice_sparsifier_steps") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    try output(out, "out").pointee = Int64(h.sparsifier?.stepsCompleted ?? 0)
  }
}

@_cdecl("coppice_sparsifier_phase")
public func cSparsifierPhase(_ handle: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = try? Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
  else { return nil }
  free(h.phaseString)
  h.phaseString = strdup(h.sparsifier?.phase ?? "not started")
  return UnsafePointer(h.phaseString)
}

@_cdecl("coppice_sparsifier_save")
public func cSparsifierSave(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
  guarded("coppice_sparsifier_save") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let p = try string(path, "path")
    try AtomicFile.write(try h.started().stateData(), to: p)
  }
}

@_cdecl("coppice_sparsifier_load")
public func cSparsifierLoad(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
  guarded("coppice_sparsifier_load") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let p = try string(path, "path")
    guard !h.targets.isEmpty else { throw APIError(.invalidState, "no parameters registered") }
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: p)) } catch {
      throw APIError(.ioError, "cannot read \(p): \(error.localizedDescription)")
    }
    let s =
      try h.sparsifier
      ?? Sparsifier(
        targets: h.targets, config: h.resolvedConfig(), stepsPerEpoch: h.stepsPerEpoch,
        totalSteps: h.totalSteps, seed: h.seed)
    do { try s.restore(from: data) } catch {
      throw APIError(.invalidFile, "\(p): \(error)")
    }
    h.sparsifier = s
  }
}
