import CoppiceEngine
import CoppiceSparsity
import Foundation

/// What a Coppice file (model, checkpoint or sparse export; or any safetensors file) holds:
/// its kind, model, per-tensor shapes and sparsity, and a checkpoint's run state.
public struct FileInspection: Codable, Sendable {
  public struct TensorInfo: Codable, Sendable {
    public let name: String
    /// "F32", "U8", …; "CSR" for a sparse weight of an export.
    public let storage: String
    public let shape: [Int]
    public let count: Int
    public let nonzeros: Int
    public let bytes: Int
    public var sparsity: Double { count == 0 ? 0 : Double(count - nonzeros) / Double(count) }
  }

  public struct RunState: Codable, Sendable {
    public let method: String
    public let targetSparsity: Double
    public let stepsTaken: Int
    public let stepsPerEpoch: Int
    public let epochsDone: Int
    public let epochs: Int
    /// Batches done of the epoch in progress (0 at an epoch boundary).
    public let batchesIntoEpoch: Int
    public let phase: String
    public let lastTestAccuracy: Double?
    public let lastLoss: Double?
  }

  public let path: String
  public let bytes: Int
  public let kind: String
  public let model: String?
  public let coppiceVersion: String?
  /// "verified", or "none" for files without one.
  public let checksum: String
  public let tensors: [TensorInfo]
  public let run: RunState?

  /// Model weights (F32 and CSR tensors other than optimizer state).
  public var weights: [TensorInfo] {
    tensors.filter {
      ($0.storage == "F32" || $0.storage == "CSR") && !$0.name.hasPrefix("optimizer.")
    }
  }

  /// Reads and validates `path` (checksum included).
  public init(path: String) throws {
    let (entries, metadata) = try CoppiceFile.read(path: path)
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    self.path = path
    bytes = (attributes?[.size] as? NSNumber)?.intValue ?? 0
    let isCoppice = metadata["format"] == "coppice"
    let kind = isCoppice ? try CoppiceFile.checkHeader(metadata, path: path) : nil
    self.kind = kind?.rawValue ?? "safetensors"
    model = metadata["model"]
    coppiceVersion = metadata["coppice_version"]
    checksum = metadata["checksum"] == nil ? "none" : "verified"

    var infos: [TensorInfo] = []
    var csrNames = Set<String>()
    for name in entries.keys where name.hasSuffix(".csr.values") {
      let weight = String(name.dropLast(".csr.values".count))
      csrNames.insert(weight)
      guard let text = metadata["\(weight).csr.shape"],
        let shape = try? JSONDecoder().decode([Int].self, from: Data(text.utf8)),
        let (rows, cols, count) = CSRTensors.matrix(shape)
      else {
        throw CoppiceError.invalidFile(
          path: path, reason: "no valid shape for CSR weight \(weight)")
      }
      let csr = try CSRTensors.parts(entries, name: weight, rows: rows, cols: cols, path: path)
      let parts = ["values", "indices", "indptr"].compactMap { entries["\(weight).csr.\($0)"] }
      infos.append(
        TensorInfo(
          name: weight, storage: "CSR", shape: shape, count: count,
          nonzeros: csr.values.reduce(0) { $0 + ($1 == 0 ? 0 : 1) },
          bytes: parts.reduce(0) { $0 + $1.bytes.count }))
    }
    for (name, e) in entries {
      if let dot = name.range(of: ".csr.", options: .backwards),
        csrNames.contains(String(name[..<dot.lowerBound]))
      {
        continue
      }
      let count = e.shape.reduce(1, *)
      let nonzeros: Int
      switch e.dtype {
      case .f32: nonzeros = e.floats.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
      case .u8: nonzeros = e.bytes.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
      case .i32: nonzeros = e.int32s.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
      case .u16: nonzeros = e.uint16s.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
      }
      infos.append(
        TensorInfo(
          name: name, storage: e.dtype.rawValue, shape: e.shape, count: count, nonzeros: nonzeros,
          bytes: e.bytes.count))
    }
    tensors = infos.sorted { $0.name < $1.name }

    if kind == .checkpoint {
      let state = try CoppiceFile.decodeJSON(
        TrainerRunState.self, metadata, key: "trainer_state", path: path)
      let training = try CoppiceFile.decodeJSON(
        TrainingConfig.self, metadata, key: "training_config", path: path)
      let sparsity =
        metadata["sparsity_config"] == nil
        ? nil
        : try CoppiceFile.decodeJSON(
          SparsityConfig.self, metadata, key: "sparsity_config", path: path)
      run = RunState(
        method: sparsity?.method.rawValue ?? "dense", targetSparsity: sparsity?.sparsity ?? 0,
        stepsTaken: state.stepsTaken, stepsPerEpoch: state.stepsPerEpoch ?? 0,
        epochsDone: state.history.last?.epoch ?? 0, epochs: training.epochs,
        batchesIntoEpoch: state.inProgress?.batchesDone ?? 0, phase: metadata["phase"] ?? "",
        lastTestAccuracy: state.history.last?.testAccuracy, lastLoss: state.history.last?.loss)
    } else {
      run = nil
    }
  }

  /// The inspection as JSON (sorted keys).
  public func json(pretty: Bool = false) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
    return try encoder.encode(self)
  }

  /// A human-readable report.
  public var text: String {
    var lines = [
      "\(path): \(bytes) bytes, \(kind)" + (model.map { " of model \($0)" } ?? "")
        + (coppiceVersion.map { ", written by coppice \($0)" } ?? "") + ", checksum \(checksum)"
    ]
    if let r = run {
      var line =
        "run: \(r.method)"
        + (r.method == "dense" ? "" : String(format: " at %.0f%% sparsity", 100 * r.targetSparsity))
        + ", step \(r.stepsTaken) (\(r.stepsPerEpoch) per epoch), \(r.epochsDone) of \(r.epochs) epochs done"
      if r.batchesIntoEpoch > 0 { line += ", \(r.batchesIntoEpoch) batches into the next" }
      if !r.phase.isEmpty { line += "; phase: \(r.phase)" }
      lines.append(line)
      if let acc = r.lastTestAccuracy, let loss = r.lastLoss {
        lines.append(String(format: "last epoch: train loss %.4f, test accuracy %.2f%%", loss, acc))
      }
    }
    let width = max(12, tensors.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int) -> String {
      s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0)
    }
    lines.append(
      pad("tensor", width) + "  " + pad("storage", 7) + "  " + pad("shape", 16) + "  "
        + pad("nonzeros", 10) + "  sparsity  bytes")
    for t in tensors {
      lines.append(
        pad(t.name, width) + "  " + pad(t.storage, 7) + "  "
          + pad(t.shape.map(String.init).joined(separator: "×"), 16) + "  "
          + pad(String(t.nonzeros), 10) + "  " + pad(String(format: "%.2f%%", 100 * t.sparsity), 8)
          + "  \(t.bytes)")
    }
    let w = weights
    let count = w.reduce(0) { $0 + $1.count }
    let nonzeros = w.reduce(0) { $0 + $1.nonzeros }
    lines.append(
      String(
        format: "weights: %d values, %d nonzero (%.2f%% sparse), %d bytes as stored, %d dense",
        count, nonzeros, count == 0 ? 0 : 100 * Double(count - nonzeros) / Double(count),
        w.reduce(0) { $0 + $1.bytes }, 4 * count))
    return lines.joined(separator: "\n")
  }
}
