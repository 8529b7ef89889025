import CCoppiceFileIO
import CCoppiceKernels
import CoppiceSparsity
import Foundation

/// The Coppice file container: a safetensors file whose metadata says what it is (`format`
/// "coppice", `kind` model / checkpoint / sparse-export, a version) and carries a CRC-32 over
/// everything. Model files, sparse exports and training checkpoints are all written and read
/// through it.
///
/// A training checkpoint holds everything a run needs to continue exactly where it stopped.
/// Tensors: every parameter and running statistic under its model name (so `Model.load` and
/// any safetensors reader take the weights straight from a checkpoint), each sparse target's
/// mask as "<weight>.mask" (U8, the weight's shape, 1 = kept) and the optimizer state as
/// "optimizer.<parameter>.<slot>". Metadata (strings): `format` "coppice", `kind`
/// "checkpoint", `checkpoint_version`, `model`, `training_config` and `sparsity_config`
/// (JSON), `trainer_state` (JSON: steps, generators, history, the epoch in progress),
/// `sparsifier_state` (JSON: masks, schedule state) and `checksum` (CRC-32 over every tensor
/// and every other metadata entry).
public enum CoppiceFile {
  public static let version = 1

  /// The metadata `kind` of each file Coppice writes.
  public enum Kind: String, Sendable {
    case model
    case checkpoint
    case sparseExport = "sparse-export"
  }

  /// CRC-32 of the tensors (in name order: name, dtype, shape, bytes) and of the metadata
  /// other than `checksum` (in key order), as "crc32:xxxxxxxx".
  package static func checksum(entries: [SafeTensors.Entry], metadata: [String: String]) -> String {
    var crc: UInt = 0
    func add(_ bytes: UnsafeRawBufferPointer) {
      guard let base = bytes.baseAddress, bytes.count > 0 else { return }
      crc = ck_crc32(crc, base, bytes.count)
    }
    func add(_ text: String) {
      var t = text + "\u{0}"
      t.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }
    for e in entries.sorted(by: { $0.name < $1.name }) {
      add(e.name)
      add("\(e.dtype.rawValue)\(e.shape)")
      e.bytes.withUnsafeBytes { add($0) }
    }
    for key in metadata.keys.sorted() where key != "checksum" {
      add(key)
      add(metadata[key]!)
    }
    return String(format: "crc32:%08x", UInt32(truncatingIfNeeded: crc))
  }

  /// Encodes entries and metadata with a checksum.
  package static func encode(_ entries: [SafeTensors.Entry], metadata: [String: String]) throws
    -> Data
  {
    var meta = metadata
    meta["checksum"] = checksum(entries: entries, metadata: meta)
    return try SafeTensors.encode(entries, metadata: meta)
  }

  /// Reads a safetensors file and, when it carries a checksum, verifies it.
  package static func read(path: String, data: Data? = nil) throws -> (
    entries: [String: SafeTensors.Entry], metadata: [String: String]
  ) {
    let file =
      try data.map { try SafeTensors.decode($0, path: path) } ?? SafeTensors.read(path: path)
    if let stored = file.metadata["checksum"] {
      let actual = checksum(entries: Array(file.entries.values), metadata: file.metadata)
      guard stored == actual else {
        throw CoppiceError.invalidFile(
          path: path,
          reason: "checksum mismatch (stored \(stored), contents give \(actual)): "
            + "the file is corrupted")
      }
    }
    return file
  }

  package static func json<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  package static func decodeJSON<T: Decodable>(
    _ type: T.Type, _ metadata: [String: String], key: String, path: String
  ) throws -> T {
    guard let text = metadata[key] else {
      throw CoppiceError.invalidFile(path: path, reason: "metadata has no \(key)")
    }
    do {
      return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    } catch {
      throw CoppiceError.invalidFile(path: path, reason: "metadata \(key) is malformed (\(error))")
    }
  }

  /// Checks `format`, `kind` and version; returns the kind.
  @discardableResult
  package static func checkHeader(_ metadata: [String: String], path: String, expect: Kind? = nil)
    throws
    -> Kind
  {
    guard metadata["format"] == "coppice" else {
      throw CoppiceError.invalidFile(
        path: path,
        reason: "not a Coppice file (metadata format is \(metadata["format"] ?? "missing"))")
    }
    let kind = Kind(rawValue: metadata["kind"] ?? "model") ?? .model
    if let expect, kind != expect {
      throw CoppiceError.invalidFile(
        path: path, reason: "this is a \(kind.rawValue) file, a \(expect.rawValue) is needed")
    }
    if kind != .model {
      let version = metadata["\(kind == .checkpoint ? "checkpoint" : "export")_version"]
      guard version == String(CoppiceFile.version) else {
        throw CoppiceError.invalidFile(
          path: path,
          reason: "\(kind.rawValue) version \(version ?? "missing") is not supported "
            + "(this build reads version \(CoppiceFile.version))")
      }
    }
    return kind
  }
}

extension CoppiceFile {
  /// The F32 tensor `name` of `shape`, finite, or a clear error.
  package static func floats(
    _ entries: [String: SafeTensors.Entry], name: String, shape: [Int], path: String
  ) throws -> [Float] {
    guard let e = entries[name] else {
      throw CoppiceError.invalidFile(path: path, reason: "missing tensor '\(name)'")
    }
    guard e.dtype == .f32, e.shape == shape else {
      throw CoppiceError.invalidFile(
        path: path,
        reason: "tensor '\(name)' is \(e.dtype.rawValue) \(e.shape), expected F32 \(shape)")
    }
    let values = e.floats
    guard values.allSatisfy(\.isFinite) else {
      throw CoppiceError.invalidFile(path: path, reason: "tensor '\(name)' holds NaN or infinity")
    }
    return values
  }

  /// The U8 mask "<weight>.mask" of `shape`, nil when the file has none, or a clear error.
  package static func mask(
    _ entries: [String: SafeTensors.Entry], of weight: String, shape: [Int], path: String
  ) throws -> [UInt8]? {
    guard let m = entries["\(weight).mask"] else { return nil }
    guard m.dtype == .u8, m.shape == shape else {
      throw CoppiceError.invalidFile(
        path: path,
        reason: "mask '\(weight).mask' is \(m.dtype.rawValue) \(m.shape), expected U8 \(shape)")
    }
    return [UInt8](m.bytes)
  }
}
