import CoppiceSparsity
import Foundation

/// Reading a sparse weight's CSR tensors from a file (see `SparseExport` for the layout):
/// everything is validated — sizes, every row pointer, column order and range, finite values —
/// before any value is read through an index, so a forged file is an `invalidFile` error, never
/// an out-of-bounds read. Depends on `SafeTensors` only (the fuzz target builds it alone).
package enum CSRTensors {
  /// A weight's CSR tensors, validated for a rows × cols matrix: sizes, row pointers from 0 to
  /// nnz and never decreasing, column indices in range and increasing within a row, finite
  /// values.
  package struct Parts {
    package var values: [Float]
    package var indices: [Int]
    package var indptr: [Int]
  }

  /// (rows, cols, count) of a weight shape [rows, …] read from a file, or nil when a dimension
  /// is negative or the product overflows or exceeds 2³¹ values.
  package static func matrix(_ shape: [Int]) -> (rows: Int, cols: Int, count: Int)? {
    guard !shape.isEmpty, shape.allSatisfy({ $0 >= 0 }) else { return nil }
    var count = 1
    for d in shape {
      let (p, overflow) = count.multipliedReportingOverflow(by: d)
      guard !overflow, p <= Int(Int32.max) else { return nil }
      count = p
    }
    let rows = shape[0]
    return (rows, rows == 0 ? 0 : count / rows, count)
  }

  package static func parts(
    _ entries: [String: SafeTensors.Entry], name: String, rows: Int, cols: Int, path: String
  ) throws -> Parts {
    func fail(_ reason: String) -> CoppiceError {
      .invalidFile(path: path, reason: "sparse weight '\(name)': \(reason)")
    }
    guard let v = entries["\(name).csr.values"], v.dtype == .f32, v.shape.count == 1,
      let ix = entries["\(name).csr.indices"], ix.shape == v.shape,
      ix.dtype == .u16 || ix.dtype == .i32,
      let ip = entries["\(name).csr.indptr"], ip.dtype == .i32, ip.shape == [rows + 1]
    else { throw fail("needs values (F32), indices (U16/I32) and indptr (I32 [\(rows + 1)])") }
    let values = v.floats
    let indices = ix.dtype == .u16 ? ix.uint16s.map(Int.init) : ix.int32s.map(Int.init)
    let indptr = ip.int32s.map(Int.init)
    guard indptr.first == 0, indptr.last == values.count else {
      throw fail("row pointers must run from 0 to the \(values.count) values")
    }
    guard values.allSatisfy(\.isFinite) else { throw fail("values hold NaN or infinity") }
    // Every row pointer is checked before any index is read through it: a pointer that rises
    // past the values and falls back would otherwise send the row loop out of bounds.
    for r in 0..<rows {
      guard indptr[r] <= indptr[r + 1] else { throw fail("row pointers decrease at row \(r)") }
      guard indptr[r + 1] <= values.count else {
        throw fail("row pointer \(indptr[r + 1]) of row \(r) is past the \(values.count) values")
      }
    }
    for r in 0..<rows {
      var previous = -1
      for k in indptr[r]..<indptr[r + 1] {
        let c = indices[k]
        guard c > previous, c < cols else {
          throw fail("column index \(c) in row \(r) is out of range or out of order")
        }
        previous = c
      }
    }
    return Parts(values: values, indices: indices, indptr: indptr)
  }

  /// The dense values of weight `name` of `shape` from its validated CSR tensors.
  package static func dense(
    _ entries: [String: SafeTensors.Entry], name: String, shape: [Int], path: String
  ) throws -> [Float] {
    guard let (rows, cols, count) = matrix(shape) else {
      throw CoppiceError.invalidFile(
        path: path, reason: "sparse weight '\(name)': invalid shape \(shape)")
    }
    let csr = try parts(entries, name: name, rows: rows, cols: cols, path: path)
    var dense = [Float](repeating: 0, count: count)
    for r in 0..<rows {
      for k in csr.indptr[r]..<csr.indptr[r + 1] {
        dense[r * cols + csr.indices[k]] = csr.values[k]
      }
    }
    return dense
  }
}

extension SafeTensors.Entry {
  public init(name: String, shape: [Int], int32: [Int32]) {
    self.init(
      name: name, dtype: .i32, shape: shape,
      bytes: int32.map(\.littleEndian).withUnsafeBytes { Data($0) })
  }

  public init(name: String, shape: [Int], uint16: [UInt16]) {
    self.init(
      name: name, dtype: .u16, shape: shape,
      bytes: uint16.map(\.littleEndian).withUnsafeBytes { Data($0) })
  }

  /// The values as Int32 (dtype must be I32).
  public var int32s: [Int32] {
    bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)).map { Int32(littleEndian: $0) } }
  }

  /// The values as UInt16 (dtype must be U16).
  public var uint16s: [UInt16] {
    bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)).map { UInt16(littleEndian: $0) } }
  }
}
