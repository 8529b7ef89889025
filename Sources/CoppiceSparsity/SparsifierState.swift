import Foundation

/// Masks packed 8 per byte (bit j of byte i is entry 8i+j), for compact checkpoints.
enum MaskPacking {
  static func pack(_ mask: [UInt8]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: (mask.count + 7) / 8)
    for (i, m) in mask.enumerated() where m != 0 { bytes[i >> 3] |= 1 << UInt8(i & 7) }
    return bytes
  }

  static func unpack(_ bytes: [UInt8], count: Int) -> [UInt8]? {
    guard bytes.count == (count + 7) / 8 else { return nil }
    return (0..<count).map { (bytes[$0 >> 3] >> UInt8($0 & 7)) & 1 }
  }
}

/// The saved state of a sparsifier: masks, step counter, seed and schedule-specific state, as
/// JSON with base64 bit-packed masks. Random draws derive from (seed, purpose, step), so the
/// seed and the step counter are the whole generator state.
struct SparsifierState: Codable {
  struct Target: Codable {
    let name: String
    let count: Int
    let mask: String
  }
  var format = SparsifierState.formatName
  var version = 1
  let method: String
  let seed: String
  let stepsCompleted: Int
  let targets: [Target]
  let schedule: [String: String]
  /// The settings that shape the masks (`Sparsifier.scheduleSettings`); absent in states
  /// written before it was recorded, which then load without this check.
  var settings: String?

  static let formatName = "coppice-sparsifier-state"

  enum CodingKeys: String, CodingKey {
    case format, version, method, seed, targets, schedule, settings
    case stepsCompleted = "steps_completed"
  }
}

extension Sparsifier {
  /// The configuration that shapes the masks and the schedule, in words: a state saved under
  /// other settings (another sparsity, other partitions) is refused on restore instead of
  /// continuing a schedule it was not made for.
  var scheduleSettings: String {
    "sparsity \(config.sparsity), distribution \(config.resolvedDistribution), "
      + "keep first/last dense \(config.keepFirstDense)/\(config.keepLastDense), "
      + "partitions \(config.partitions), rounds \(config.rounds), "
      + "GaP step length \(config.gapStepLength.map(String.init) ?? "default")"
  }

  /// Masks, step counter, seed and schedule state (not the weights: those belong to the
  /// model's checkpoint). Throws if the sparsifier has not been started.
  public func stateData() throws -> Data {
    guard isStarted else {
      throw CoppiceError.invalidArgument("sparsifier: nothing to save before start()")
    }
    let scheduleState = schedule.saveState()
    let state = SparsifierState(
      method: config.method.rawValue, seed: String(context.seed), stepsCompleted: stepsCompleted,
      targets: targets.map {
        .init(
          name: $0.name, count: $0.count,
          mask: Data(MaskPacking.pack($0.mask)).base64EncodedString())
      },
      schedule: scheduleState.mapValues { Data($0).base64EncodedString() },
      settings: scheduleSettings)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return try encoder.encode(state)
  }

  /// Restores what `stateData()` saved, into a sparsifier built with the same method, seed and
  /// targets (names and sizes, in order). Kept weights are left as they are (load the model's
  /// weights separately); pruned weights are zeroed. Replaces `start()`.
  public func restore(from data: Data) throws {
    func fail(_ reason: String) -> CoppiceError {
      .invalidArgument("sparsifier state: \(reason)")
    }
    let state: SparsifierState
    do {
      state = try JSONDecoder().decode(SparsifierState.self, from: data)
    } catch {
      throw fail("not a sparsifier state (\(error))")
    }
    guard state.format == SparsifierState.formatName else {
      throw fail("unknown format \(state.format)")
    }
    guard state.version == 1 else { throw fail("unsupported version \(state.version)") }
    guard state.method == config.method.rawValue else {
      throw fail("saved for method \(state.method), this sparsifier runs \(config.method.rawValue)")
    }
    if let saved = state.settings, saved != scheduleSettings {
      throw fail("saved with \(saved); this sparsifier has \(scheduleSettings)")
    }
    guard state.seed == String(context.seed) else {
      throw fail("saved with seed \(state.seed), this sparsifier has seed \(context.seed)")
    }
    guard state.stepsCompleted >= 0 else {
      throw fail("negative step count \(state.stepsCompleted)")
    }
    guard state.stepsCompleted <= Sparsifier.maxSteps else {
      throw fail("step count \(state.stepsCompleted) is outside 0...2^40")
    }
    guard state.targets.count == targets.count else {
      throw fail("\(state.targets.count) targets saved, \(targets.count) registered")
    }
    var masks: [[UInt8]] = []
    for (saved, target) in zip(state.targets, targets) {
      guard saved.name == target.name, saved.count == target.count else {
        throw fail(
          "saved target \(saved.name) (\(saved.count) weights) does not match "
            + "\(target.name) (\(target.count) weights)")
      }
      guard let bytes = Data(base64Encoded: saved.mask),
        let mask = MaskPacking.unpack([UInt8](bytes), count: target.count)
      else { throw fail("malformed mask for \(saved.name)") }
      masks.append(mask)
    }
    var extra: [String: [UInt8]] = [:]
    for (key, value) in state.schedule {
      guard let bytes = Data(base64Encoded: value) else {
        throw fail("malformed schedule entry \(key)")
      }
      extra[key] = [UInt8](bytes)
    }
    try restore(Snapshot(masks: masks, stepsCompleted: state.stepsCompleted, schedule: extra))
  }

  /// The sparsifier's state in memory — masks, step counter, schedule state — for rolling a
  /// run back (a P-GaP round stopped part-way) without going through `stateData()`.
  public struct Snapshot {
    let masks: [[UInt8]]
    let stepsCompleted: Int
    let schedule: [String: [UInt8]]
  }

  /// The current state (after `start()`).
  public func snapshot() -> Snapshot {
    Snapshot(
      masks: targets.map(\.mask), stepsCompleted: stepsCompleted, schedule: schedule.saveState())
  }

  /// Installs a snapshot taken from this sparsifier (or decoded from its saved state): kept
  /// weights stay as they are, pruned weights are zeroed. Replaces `start()`.
  public func restore(_ snapshot: Snapshot) throws {
    try schedule.restoreState(snapshot.schedule, context: context)
    for (target, mask) in zip(targets, snapshot.masks) { try target.loadMask(mask) }
    stepsCompleted = snapshot.stepsCompleted
    isStarted = true
    context.beginUpdate()
    context.log("step \(stepsCompleted): restored sparsifier state")
    refresh()
  }
}
