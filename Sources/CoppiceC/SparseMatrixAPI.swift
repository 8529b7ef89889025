// coppice_sparse_matrix_* and the products: the sparse kernels on host buffers.
import CCoppiceABI
import CCoppiceKernels
import Coppice
import Foundation

final class SparseMatrixHandle {
  let rows: Int
  let cols: Int
  let matrix: OpaquePointer

  init(rows: Int, cols: Int, matrix: OpaquePointer) {
    self.rows = rows
    self.cols = cols
    self.matrix = matrix
  }

  deinit { ck_sparse_free(matrix) }
}

private func checkColumns(_ n: Int64) throws -> Int32 {
  guard n >= 1, n <= Int64(Int32.max) else {
    throw APIError(.invalidArgument, "n must be in 1...2^31−1, got \(n)")
  }
  return Int32(n)
}

private func checkProduct(_ a: Int, _ b: Int64) throws {
  let (product, overflow) = Int64(a).multipliedReportingOverflow(by: b)
  guard !overflow, product < Int64(Int32.max) * 64 else {
    throw APIError(.invalidArgument, "operand of \(a)×\(b) floats is too large")
  }
}

@_cdecl("coppice_sparse_matrix_create")
public func cSparseMatrixCreate(
  _ rows: Int64, _ cols: Int64, _ dense: UnsafePointer<Float>?, _ mask: UnsafePointer<UInt8>?,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_sparse_matrix_create") {
    let out = try output(out, "out")
    out.pointee = nil
    let (cells, overflow) = rows.multipliedReportingOverflow(by: cols)
    guard rows >= 1, cols >= 1, !overflow, cells < Int64(Int32.max) else {
      throw APIError(
        .invalidArgument, "rows and cols must be >= 1 with rows·cols < 2^31, got \(rows)×\(cols)")
    }
    guard let dense else { throw APIError(.invalidArgument, "dense is NULL") }
    let count = Int(rows * cols)
    let keep: [UInt8] =
      mask.map { m in (0..<count).map { m[$0] != 0 ? 1 : 0 } }
      ?? (0..<count).map { dense[$0] != 0 ? 1 : 0 }
    guard
      let m = keep.withUnsafeBufferPointer({
        ck_sparse_create_u8(Int32(rows), Int32(cols), dense, $0.baseAddress)
      })
    else { throw APIError(.outOfMemory, "cannot build a \(rows)×\(cols) sparse matrix") }
    out.pointee = Handles.register(SparseMatrixHandle(rows: Int(rows), cols: Int(cols), matrix: m))
  }
}

@_cdecl("coppice_sparse_matrix_destroy")
public func cSparseMatrixDestroy(_ handle: OpaquePointer?) {
  Handles.destroy(handle, as: SparseMatrixHandle.self)
}

@_cdecl("coppice_sparse_matrix_update")
public func cSparseMatrixUpdate(_ handle: OpaquePointer?, _ dense: UnsafePointer<Float>?) -> Int32 {
  guarded("coppice_sparse_matrix_update") {
    let h = try Handles.resolve(handle, as: SparseMatrixHandle.self, what: "matrix")
    guard let dense else { throw APIError(.invalidArgument, "dense is NULL") }
    ck_sparse_update_values(h.matrix, dense)
  }
}

@_cdecl("coppice_sparse_matrix_nnz")
public func cSparseMatrixNnz(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32
{
  guarded("coppice_sparse_matrix_nnz") {
    let h = try Handles.resolve(handle, as: SparseMatrixHandle.self, what: "matrix")
    try output(out, "out").pointee = ck_sparse_nnz(h.matrix)
  }
}

@_cdecl("coppice_spmm")
public func cSpmm(
  _ handle: OpaquePointer?, _ n: Int64, _ x: UnsafePointer<Float>?, _ beta: Float,
  _ y: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_spmm") {
    let h = try Handles.resolve(handle, as: SparseMatrixHandle.self, what: "w")
    let cols = try checkColumns(n)
    try checkProduct(max(h.rows, h.cols), n)
    guard let x else { throw APIError(.invalidArgument, "x is NULL") }
    guard let y else { throw APIError(.invalidArgument, "y is NULL") }
    guard beta.isFinite else { throw APIError(.invalidArgument, "beta is not finite") }
    ck_sparse_spmm(h.matrix, cols, x, cols, nil, beta, y, cols)
  }
}

@_cdecl("coppice_spmm_transposed")
public func cSpmmTransposed(
  _ handle: OpaquePointer?, _ n: Int64, _ dy: UnsafePointer<Float>?, _ beta: Float,
  _ dx: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_spmm_transposed") {
    let h = try Handles.resolve(handle, as: SparseMatrixHandle.self, what: "w")
    let cols = try checkColumns(n)
    try checkProduct(max(h.rows, h.cols), n)
    guard let dy else { throw APIError(.invalidArgument, "dy is NULL") }
    guard let dx else { throw APIError(.invalidArgument, "dx is NULL") }
    guard beta.isFinite else { throw APIError(.invalidArgument, "beta is not finite") }
    ck_sparse_spmm_t(h.matrix, cols, dy, cols, beta, dx, cols)
  }
}

@_cdecl("coppice_sddmm")
public func cSddmm(
  _ handle: OpaquePointer?, _ n: Int64, _ dy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?,
  _ dw: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_sddmm") {
    let h = try Handles.resolve(handle, as: SparseMatrixHandle.self, what: "w")
    let cols = try checkColumns(n)
    try checkProduct(max(h.rows, h.cols), n)
    guard let dy else { throw APIError(.invalidArgument, "dy is NULL") }
    guard let x else { throw APIError(.invalidArgument, "x is NULL") }
    guard let dw else { throw APIError(.invalidArgument, "dw is NULL") }
    ck_sparse_sddmm_dense(h.matrix, cols, dy, cols, x, cols, 0, dw)
  }
}
