import CCoppiceKernels
import CoppiceSparsity

/// Where a layer finds the mask of its weight. Sparse-training code attaches one to `Linear`
/// and `Conv2d` layers; the layer then runs the sparse kernels whenever they are expected to
/// be faster than dense OpenBLAS for its shape and density, and the dense ones otherwise.
public protocol MaskSource: AnyObject {
  /// One byte per weight, 1 = kept, in the weight's row-major order.
  var mask: [UInt8] { get }
  /// Changes whenever `mask` changes, so the layer knows to rebuild its sparse format.
  var maskVersion: Int { get }
  /// Fraction of kept weights.
  var density: Double { get }
  /// When true, the next backward must produce the full dense weight gradient (RigL's growth
  /// criterion); otherwise only kept positions are needed.
  var needsDenseGradient: Bool { get }
}

/// Process-wide choice between the dense and sparse kernels for masked layers.
public enum SparseDispatch {
  public enum Mode: String, Sendable, CaseIterable {
    /// Per layer and product, whichever the calibrated cost model says is faster.
    case automatic
    /// Always the sparse kernels (tests, benchmarks).
    case alwaysSparse
    /// Always dense OpenBLAS with masked weights (tests, benchmarks).
    case alwaysDense
  }
  nonisolated(unsafe) public static var mode: Mode = .automatic
}

/// How a layer executed its last step, for reports and tests.
public struct SparseExecutionState: Sendable, Equatable {
  public var forwardSparse = false
  public var backwardSparse = false
}

extension SparseExecutionState {
  /// After a backward: the sparse path wrote the weight gradient at kept positions only (zeros
  /// elsewhere), so a sparsifier target need not mask it again (`gradientIsMasked`).
  func reportMaskedGradient(to source: MaskSource?) {
    if backwardSparse, let target = source as? SparseTarget { target.gradientIsMasked = true }
  }
}

/// The mask of a layer without one that runs the sparse kernels anyway, because they are
/// faster even with every weight kept (`ck_sparse_conv2d_direct_preferred`).
final class FullMask: MaskSource {
  let mask: [UInt8]
  let maskVersion = 0
  let density = 1.0
  let needsDenseGradient = false
  init(count: Int) { mask = [UInt8](repeating: 1, count: count) }
}

/// The sparse form (ck_sparse) of a weight matrix M×K, rebuilt when the mask changes and
/// refreshed from the dense weight before each use (values change every optimizer step).
final class SparseWeightFormat {
  let rows: Int
  let cols: Int
  private(set) var handle: OpaquePointer?
  private var builtVersion = Int.min
  private var builtSource: ObjectIdentifier?
  private var scratch: UnsafeMutablePointer<Float>?
  private var scratchCapacity = 0
  /// Whether the values were refreshed since the weights last changed (set by `refresh`,
  /// cleared by the layer at the start of each forward pass).
  var fresh = false

  init(rows: Int, cols: Int) {
    self.rows = rows
    self.cols = cols
  }

  deinit {
    ck_sparse_free(handle)
    scratch?.deallocate()
  }

  /// Makes the format current for `weights` under `source`'s mask.
  func refresh(weights: UnsafePointer<Float>, source: MaskSource) {
    if source.maskVersion != builtVersion || ObjectIdentifier(source) != builtSource
      || handle == nil
    {
      ck_sparse_free(handle)
      handle = source.mask.withUnsafeBufferPointer {
        ck_sparse_create_u8(Int32(rows), Int32(cols), weights, $0.baseAddress)
      }
      precondition(handle != nil, "cannot build the sparse form of a \(rows)×\(cols) weight")
      builtVersion = source.maskVersion
      builtSource = ObjectIdentifier(source)
    } else if !fresh {
      ck_sparse_update_values(handle, weights)
    }
    fresh = true
  }

  var nonzeros: Int { handle.map { Int(ck_sparse_nnz($0)) } ?? 0 }

  /// Scratch space of nnz floats for weight gradients in value order.
  func gradientValues() -> UnsafeMutablePointer<Float> {
    let needed = max(1, nonzeros)
    if scratchCapacity < needed {
      scratch?.deallocate()
      scratch = .allocate(capacity: needed)
      scratchCapacity = needed
    }
    return scratch!
  }

  /// values[i] = 0 wherever `mask` does not keep weight i.
  static func zero(_ values: UnsafeMutablePointer<Float>, outside mask: MaskSource) {
    mask.mask.withUnsafeBufferPointer { m in
      for i in 0..<m.count where m[i] == 0 { values[i] = 0 }
    }
  }

  static func prefers(_ op: ck_sparse_op, m: Int, k: Int, n: Int, density: Double) -> Bool {
    switch SparseDispatch.mode {
    case .automatic: return ck_sparse_prefer(op, Int32(m), Int32(k), Int32(n), density) != 0
    case .alwaysSparse: return true
    case .alwaysDense: return false
    }
  }
}

/// The three products of a sparse layer's training step.
enum SparseOp {
  case forward, inputGradient, weightGradient

  var kernelOp: ck_sparse_op {
    switch self {
    case .forward: return CK_SPARSE_OP_FORWARD
    case .inputGradient: return CK_SPARSE_OP_INPUT_GRAD
    case .weightGradient: return CK_SPARSE_OP_WEIGHT_GRAD
    }
  }
}
