import CCoppiceKernels

/// The three products of a linear layer's training step, y = x·Wᵀ (+ b) with W [out, in] and
/// x [N, in] row-major, over raw buffers: sparse (ck_sparse.h on the mask of a `MaskSource`)
/// when the cost model expects the sparse kernels to be faster, dense OpenBLAS otherwise.
///
/// It owns the weight's sparse form (rebuilt when the mask version changes, values refreshed
/// from the dense weight at every forward); the sparse products work on the row-major arrays
/// directly (ck_sparse_linear_*: chunks of rows transposed in cache, never whole arrays). The
/// engine's `Linear` and the C ABI's layer handles (a host's own model) both run through it.
/// Not thread-safe.
public final class LinearProducts {
  public let inFeatures: Int
  public let outFeatures: Int
  /// Which kernels the last forward and backward used.
  public private(set) var execution = SparseExecutionState()
  /// Whether the last backward gave every row of dx to its `dxObserver` (the sparse kernels
  /// do; the dense path does not).
  public private(set) var observedInputGradient = false
  private lazy var format = SparseWeightFormat(rows: outFeatures, cols: inFeatures)
  // A dense weight gradient nobody asked for (the dense backward always computes one).
  private var unusedWeightGradient: Tensor?

  public init(inFeatures: Int, outFeatures: Int) {
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
  }

  /// Whether a forward and a backward of `batch` rows would run on the sparse kernels at the
  /// mask's current density (the same decision `forward` and `backward` make).
  public func plan(batch n: Int, mask: MaskSource?) -> SparseExecutionState {
    guard let mask else { return SparseExecutionState() }
    var plan = SparseExecutionState()
    plan.forwardSparse = prefersSparse(.forward, batch: n, mask)
    plan.backwardSparse =
      !mask.needsDenseGradient && prefersSparse(.inputGradient, batch: n, mask)
      && prefersSparse(.weightGradient, batch: n, mask)
    return plan
  }

  /// y[N × out] = x[N × in]·Wᵀ + bias. `weights` must be zero outside the mask of `mask`
  /// (nil: a dense layer). The sparse form's values are refreshed from `weights` here.
  public func forward(
    x: UnsafePointer<Float>, batch n: Int, weights: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, mask: MaskSource?, y: UnsafeMutablePointer<Float>
  ) {
    format.fresh = false
    execution.forwardSparse = false
    if let mask, plan(batch: n, mask: mask).forwardSparse {
      format.refresh(weights: weights, source: mask)
      ck_sparse_linear_forward(format.handle, Int32(n), x, bias, y)
      execution.forwardSparse = true
      return
    }
    ck_linear_forward(Int32(n), Int32(inFeatures), Int32(outFeatures), x, weights, bias, y)
  }

  /// Gradients of the last forward's x (the same `x` and `batch`): dx [N × in], dw [out × in]
  /// and db [out], each written when not nil. On the sparse path dw is computed at the kept
  /// positions only (SDDMM) and is 0 elsewhere; on the dense path it is the full gradient,
  /// zeroed outside the mask when `maskWeightGradient` is set and the mask source does not ask
  /// for dense gradients (RigL's update steps).
  public func backward(
    x: UnsafePointer<Float>, dy: UnsafePointer<Float>, batch n: Int,
    weights: UnsafePointer<Float>, mask: MaskSource?, dx: UnsafeMutablePointer<Float>?,
    dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
    maskWeightGradient: Bool = false, dxObserver: UnsafePointer<ck_image_observer>? = nil
  ) {
    execution.backwardSparse = false
    observedInputGradient = false
    if let mask, plan(batch: n, mask: mask).backwardSparse {
      sparseBackward(
        x: x, dy: dy, batch: n, weights: weights, mask: mask, dx: dx, dxObserver: dxObserver,
        dw: dw, db: db)
      execution.backwardSparse = true
      observedInputGradient = dx != nil && dxObserver != nil
      return
    }
    let gradient = dw ?? weightGradientScratch()
    ck_linear_backward(
      Int32(n), Int32(inFeatures), Int32(outFeatures), x, weights, dy, dx, gradient, db)
    if maskWeightGradient, let mask, !mask.needsDenseGradient, let dw {
      SparseWeightFormat.zero(dw, outside: mask)
    }
  }

  private func sparseBackward(
    x: UnsafePointer<Float>, dy: UnsafePointer<Float>, batch n: Int,
    weights: UnsafePointer<Float>, mask: MaskSource, dx: UnsafeMutablePointer<Float>?,
    dxObserver: UnsafePointer<ck_image_observer>?, dw: UnsafeMutablePointer<Float>?,
    db: UnsafeMutablePointer<Float>?
  ) {
    format.refresh(weights: weights, source: mask)
    let values = dw != nil ? format.gradientValues() : nil
    ck_sparse_linear_backward(format.handle, Int32(n), x, dy, dx, dxObserver, values, db)
    if let dw, let values { ck_sparse_scatter(format.handle, values, dw) }
  }

  private func weightGradientScratch() -> UnsafeMutablePointer<Float> {
    let t = Tensor.reuse(unusedWeightGradient, shape: [outFeatures, inFeatures])
    unusedWeightGradient = t
    return t.data
  }

  private func prefersSparse(_ op: SparseOp, batch: Int, _ mask: MaskSource) -> Bool {
    SparseWeightFormat.prefers(
      op.kernelOp, m: outFeatures, k: inFeatures, n: batch, density: mask.density)
  }
}
