import Foundation

/// The safetensors file format (what PyTorch, JAX and Hugging Face tools load): an 8-byte
/// little-endian header length, a JSON header mapping each tensor name to its dtype, shape and
/// byte range, with optional string metadata under "__metadata__", then the raw little-endian
/// data. Coppice stores float32 ("F32") tensors and uint8 ("U8") masks.
public enum SafeTensors {
  public enum DType: String, Sendable {
    case f32 = "F32"
    case u8 = "U8"

    var size: Int { self == .f32 ? 4 : 1 }
  }

  /// A tensor read from or to be written to a file.
  public struct Entry: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var bytes: Data

    public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
      self.name = name
      self.dtype = .f32
      self.shape = shape
      self.bytes = Data(buffer: floats)
    }

    public init(name: String, shape: [Int], mask: [UInt8]) {
      self.name = name
      self.dtype = .u8
      self.shape = shape
      self.bytes = Data(mask)
    }

    /// The values as float32 (dtype must be F32).
    public var floats: [Float] {
      bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
  }

  /// Serialises entries and metadata (tensors in the given order).
  public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) throws -> Data {
    var header: [String: Any] = [:]
    var offset = 0
    for e in entries {
      header[e.name] = [
        "dtype": e.dtype.rawValue, "shape": e.shape,
        "data_offsets": [offset, offset + e.bytes.count],
      ]
      offset += e.bytes.count
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does.
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data()
    var length = UInt64(json.count).littleEndian
    out.append(Data(bytes: &length, count: 8))
    out.append(json)
    for e in entries { out.append(e.bytes) }
    return out
  }

  /// Parses a file's bytes, validating every size and offset; errors name `path` and the
  /// problem (truncated header, bad JSON, overlapping or out-of-range data, wrong sizes).
  public static func decode(_ data: Data, path: String) throws -> (
    entries: [String: Entry], metadata: [String: String]
  ) {
    func fail(_ reason: String) -> CoppiceError { .invalidFile(path: path, reason: reason) }
    guard data.count >= 8 else {
      throw fail("not a safetensors file: \(data.count) bytes, shorter than the 8-byte header")
    }
    let length = data.prefix(8).withUnsafeBytes {
      UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))
    }
    guard length >= 2, length <= UInt64(data.count - 8), length <= 100_000_000 else {
      throw fail("header length \(length) does not fit in the file's \(data.count) bytes")
    }
    let headerEnd = 8 + Int(length)
    guard
      let object = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)),
      let header = object as? [String: Any]
    else { throw fail("the header is not a JSON object") }
    let body = data.count - headerEnd
    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        guard let m = value as? [String: String] else {
          throw fail("__metadata__ is not a map of strings")
        }
        metadata = m
        continue
      }
      guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
        let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int],
        offsets.count == 2
      else { throw fail("tensor '\(name)': header entry needs dtype, shape and data_offsets") }
      guard let dtype = DType(rawValue: dtypeName) else {
        throw fail("tensor '\(name)': unsupported dtype \(dtypeName) (F32, U8)")
      }
      guard shape.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }), shape.count <= 8 else {
        throw fail("tensor '\(name)': invalid shape \(shape)")
      }
      var count = 1
      for d in shape {
        let (p, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow, p <= body else {
          throw fail("tensor '\(name)': shape \(shape) is too large")
        }
        count = p
      }
      let (begin, end) = (offsets[0], offsets[1])
      guard begin >= 0, end >= begin, end <= body else {
        throw fail(
          "tensor '\(name)': data offsets \(offsets) outside the \(body)-byte data section")
      }
      guard end - begin == count * dtype.size else {
        throw fail(
          "tensor '\(name)': \(end - begin) bytes for shape \(shape) of \(dtypeName) (expected \(count * dtype.size))"
        )
      }
      entries[name] = Entry(
        name: name, dtype: dtype, shape: shape,
        bytes: data.subdata(in: (headerEnd + begin)..<(headerEnd + end)))
    }
    return (entries, metadata)
  }

  public static func read(path: String) throws -> (
    entries: [String: Entry], metadata: [String: String]
  ) {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
      throw CoppiceError.io("cannot read \(path): \(error.localizedDescription)")
    }
    return try decode(data, path: path)
  }
}

extension SafeTensors.Entry {
  init(name: String, dtype: SafeTensors.DType, shape: [Int], bytes: Data) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.bytes = bytes
  }
}

extension Model {
  /// Saves every parameter and running statistic (and, when given, the sparse-training masks
  /// as "<name>.mask" U8 tensors) to a safetensors file, atomically.
  public func save(path: String, masks: [SparseTarget] = [], metadata: [String: String] = [:])
    throws
  {
    var entries: [SafeTensors.Entry] = []
    for p in parameters {
      entries.append(
        .init(name: p.name, shape: p.shape, floats: UnsafeBufferPointer(p.value.buffer)))
    }
    for b in buffers {
      entries.append(
        .init(name: b.name, shape: b.tensor.shape, floats: UnsafeBufferPointer(b.tensor.buffer)))
    }
    for t in masks { entries.append(.init(name: "\(t.name).mask", shape: t.shape, mask: t.mask)) }
    var meta = metadata
    meta["format"] = "coppice"
    meta["model"] = name
    try AtomicFile.write(try SafeTensors.encode(entries, metadata: meta), to: path)
  }

  /// Loads parameters and running statistics saved by `save` (or any safetensors file with
  /// the same names, shapes and F32 dtype). Nothing changes unless every tensor is present and
  /// matches, so a bad file leaves the model intact.
  public func load(path: String) throws {
    let (entries, _) = try SafeTensors.read(path: path)
    let tensors = parameters.map { ($0.name, $0.value) } + buffers.map { ($0.name, $0.tensor) }
    var values: [(Tensor, [Float])] = []
    for (name, tensor) in tensors {
      guard let e = entries[name] else {
        throw CoppiceError.invalidFile(path: path, reason: "missing tensor '\(name)'")
      }
      guard e.dtype == .f32, e.shape == tensor.shape else {
        throw CoppiceError.invalidFile(
          path: path,
          reason:
            "tensor '\(name)' is \(e.dtype.rawValue) \(e.shape), the model needs F32 \(tensor.shape)"
        )
      }
      let v = e.floats
      guard v.allSatisfy(\.isFinite) else {
        throw CoppiceError.invalidFile(path: path, reason: "tensor '\(name)' holds NaN or infinity")
      }
      values.append((tensor, v))
    }
    for (tensor, v) in values {
      v.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: tensor.count) }
    }
  }
}
