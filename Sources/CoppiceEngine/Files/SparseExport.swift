import CoppiceSparsity
import Foundation

/// Trained models for inference, with sparse weights in compressed sparse row (CSR) form, as
/// safetensors. A prunable weight of shape [rows, …] (flattened to rows × cols) whose CSR form
/// is smaller than its dense form is stored as three tensors:
///
/// - "<weight>.csr.values" F32 [nnz]: the nonzero values, row by row;
/// - "<weight>.csr.indices" U16 (cols ≤ 65536) or I32 [nnz]: their column indices;
/// - "<weight>.csr.indptr" I32 [rows + 1]: where each row starts in values/indices;
///
/// and "<weight>.csr.shape" in the metadata ("[rows, …]" as JSON). Everything else (biases,
/// norms, running statistics, dense-enough weights) is stored dense under its model name.
/// Metadata `format` "coppice", `kind` "sparse-export", `export_version`, `model`, `classes`,
/// `checksum`.
public enum SparseExport {
  /// Sizes of the export and of the same model stored dense, in bytes.
  public struct Summary: Sendable {
    public let bytes: Int
    public let denseBytes: Int
    public let sparseWeights: Int
  }

  /// One weight's CSR form (nonzeros of a rows × cols matrix).
  struct CSR {
    var rows: Int
    var cols: Int
    var values: [Float] = []
    var indices: [Int32] = []
    var indptr: [Int32] = [0]

    init(rows: Int, cols: Int, dense: UnsafeBufferPointer<Float>) {
      self.rows = rows
      self.cols = cols
      for r in 0..<rows {
        for c in 0..<cols where dense[r * cols + c] != 0 {
          values.append(dense[r * cols + c])
          indices.append(Int32(c))
        }
        indptr.append(Int32(values.count))
      }
    }

    var narrowIndices: Bool { cols <= 65536 }
    var bytes: Int { values.count * (4 + (narrowIndices ? 2 : 4)) + (rows + 1) * 4 }
  }

  /// Writes `model` to `path` (atomically) and returns the sizes.
  @discardableResult
  public static func write(_ model: Model, to path: String) throws -> Summary {
    var entries: [SafeTensors.Entry] = []
    var metadata: [String: String] = [
      "format": "coppice", "kind": CoppiceFile.Kind.sparseExport.rawValue,
      "export_version": String(CoppiceFile.version), "coppice_version": Version.string,
      "model": model.name, "classes": String(model.numberOfClasses),
    ]
    var denseBytes = 0
    var sparseWeights = 0
    for p in model.parameters {
      denseBytes += p.count * 4
      let rows = p.shape.first ?? 1
      let cols = rows == 0 ? 0 : p.count / rows
      let buffer = UnsafeBufferPointer(p.value.buffer)
      let csr = p.prunable && p.shape.count >= 2 ? CSR(rows: rows, cols: cols, dense: buffer) : nil
      if let csr, csr.bytes < p.count * 4 {
        sparseWeights += 1
        entries.append(
          csr.values.withUnsafeBufferPointer {
            SafeTensors.Entry(name: "\(p.name).csr.values", shape: [csr.values.count], floats: $0)
          })
        entries.append(
          csr.narrowIndices
            ? .init(
              name: "\(p.name).csr.indices", shape: [csr.indices.count],
              uint16: csr.indices.map { UInt16($0) })
            : .init(name: "\(p.name).csr.indices", shape: [csr.indices.count], int32: csr.indices))
        entries.append(.init(name: "\(p.name).csr.indptr", shape: [rows + 1], int32: csr.indptr))
        metadata["\(p.name).csr.shape"] = "\(p.shape)"
      } else {
        entries.append(.init(name: p.name, shape: p.shape, floats: buffer))
      }
    }
    denseBytes += model.buffers.reduce(0) { $0 + $1.tensor.count * 4 }
    entries += model.bufferEntries
    let data = try CoppiceFile.encode(entries, metadata: metadata)
    try AtomicFile.write(data, to: path)
    return Summary(bytes: data.count, denseBytes: denseBytes, sparseWeights: sparseWeights)
  }
}
