import CoppiceSparsity
import Foundation

/// The safetensors file format (what PyTorch, JAX and Hugging Face tools load): an 8-byte
/// little-endian header length, a JSON header mapping each tensor name to its dtype, shape and
/// byte range, with optional string metadata under "__metadata__", then the raw little-endian
/// data. Coppice stores float32 ("F32") tensors, uint8 ("U8") masks, and int32/uint16
/// ("I32"/"U16") indices of sparse exports.
public enum SafeTensors {
  public enum DType: String, Sendable {
    case f32 = "F32"
    case i32 = "I32"
    case u16 = "U16"
    case u8 = "U8"

    public var size: Int {
      switch self {
      case .f32, .i32: return 4
      case .u16: return 2
      case .u8: return 1
      }
    }
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
  /// problem (truncated file, bad JSON, bad dtype or shape, data offsets out of range,
  /// overlapping or leaving holes: as the format requires, the tensors' byte ranges must tile
  /// the data section exactly).
  public static func decode(_ data: Data, path: String) throws -> (
    entries: [String: Entry], metadata: [String: String]
  ) {
    func fail(_ reason: String) -> CoppiceError { .invalidFile(path: path, reason: reason) }
    // Index from 0 even when given a slice of a larger Data.
    let data = data.startIndex == 0 ? data : Data(data)
    guard data.count >= 8 else {
      throw fail(
        "truncated: \(data.count) bytes, not a safetensors file (shorter than the 8-byte header length)"
      )
    }
    let length = data.prefix(8).withUnsafeBytes {
      UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))
    }
    guard length >= 2 else {
      throw fail("header length \(length) is too small for a JSON object")
    }
    guard length <= UInt64(data.count - 8) else {
      throw fail(
        "truncated: header length \(length) runs past the end of the file (\(data.count - 8) bytes after the length)"
      )
    }
    guard length <= 100_000_000 else {
      throw fail("header length \(length) exceeds the 100 MB limit")
    }
    let headerEnd = 8 + Int(length)
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd))
    } catch {
      let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey].map { ": \($0)" }
      throw fail("the header is not valid JSON\(detail ?? "")")
    }
    guard let header = object as? [String: Any] else {
      throw fail("the header is not a JSON object")
    }
    let body = data.count - headerEnd
    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    var ranges: [(begin: Int, end: Int, name: String)] = []
    for (name, value) in header {
      if name == "__metadata__" {
        guard let m = value as? [String: String] else {
          throw fail("__metadata__ is not a map of strings")
        }
        metadata = m
        continue
      }
      guard let info = value as? [String: Any] else {
        throw fail("tensor '\(name)': header entry is not an object")
      }
      guard let dtypeName = info["dtype"] as? String else {
        throw fail("tensor '\(name)': dtype missing or not a string")
      }
      guard let dtype = DType(rawValue: dtypeName) else {
        throw fail("tensor '\(name)': unsupported dtype \(dtypeName) (F32, I32, U16, U8)")
      }
      guard let shape = info["shape"] as? [Int] else {
        throw fail("tensor '\(name)': shape missing or not a list of integers")
      }
      guard shape.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }), shape.count <= 8 else {
        throw fail("tensor '\(name)': invalid shape \(shape)")
      }
      guard let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
        throw fail("tensor '\(name)': data_offsets missing or not two integers")
      }
      let (begin, end) = (offsets[0], offsets[1])
      guard begin >= 0, end >= begin else {
        throw fail("tensor '\(name)': invalid data offsets \(offsets) (need 0 <= begin <= end)")
      }
      guard end <= body else {
        throw fail(
          "truncated: tensor '\(name)': data offsets \(offsets) run past the \(body)-byte data section"
        )
      }
      // The element count, bounded by the tensor's bytes so that it cannot overflow.
      var count = shape.contains(0) ? 0 : 1
      for d in shape where count > 0 {
        let (p, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow, p <= end - begin else {
          throw fail(
            "tensor '\(name)': shape \(shape) of \(dtypeName) needs more than the \(end - begin) bytes of data offsets \(offsets)"
          )
        }
        count = p
      }
      guard end - begin == count * dtype.size else {
        throw fail(
          "tensor '\(name)': data offsets \(offsets) hold \(end - begin) bytes, shape \(shape) of \(dtypeName) needs \(count * dtype.size)"
        )
      }
      ranges.append((begin, end, name))
      entries[name] = Entry(
        name: name, dtype: dtype, shape: shape,
        bytes: data.subdata(in: (headerEnd + begin)..<(headerEnd + end)))
    }
    // The byte ranges must tile the data section: no overlap, no hole, nothing after the end.
    ranges.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
    var position = 0
    var previous = ""
    for r in ranges {
      guard r.begin >= position else {
        throw fail(
          "tensor '\(r.name)': data offsets [\(r.begin), \(r.end)] overlap tensor '\(previous)' (which ends at \(position))"
        )
      }
      guard r.begin == position else {
        throw fail(
          "tensor '\(r.name)': data offsets [\(r.begin), \(r.end)] leave a hole (bytes \(position)..<\(r.begin) belong to no tensor)"
        )
      }
      (position, previous) = (r.end, r.name)
    }
    guard position == body else {
      throw fail(
        "\(body - position) trailing bytes after the last tensor's data offsets (data section of \(body) bytes, tensors cover \(position))"
      )
    }
    return (entries, metadata)
  }

  public static func read(path: String) throws -> (
    entries: [String: Entry], metadata: [String: String]
  ) {
    // Only regular files (symbolic links followed): a directory, FIFO or device would give a
    // misleading system error, or block or never end.
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw CoppiceError.io("cannot read \(path): \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & S_IFMT == S_IFREG else {
      let kind = info.st_mode & S_IFMT == S_IFDIR ? "a directory" : "a special file (FIFO, device)"
      throw CoppiceError.io("cannot read \(path): it is \(kind), not a regular file")
    }
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
      throw CoppiceError.io("cannot read \(path): \(error.localizedDescription)")
    }
    return try decode(data, path: path)
  }
}

extension SafeTensors.Entry {
  package init(name: String, dtype: SafeTensors.DType, shape: [Int], bytes: Data) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
    self.bytes = bytes
  }
}
