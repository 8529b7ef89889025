import CCoppiceKernels

/// The three products of a 2-D convolution's training step (NCHW input, OIHW weight, the shape
/// of `ck_conv_shape`) over raw buffers: sparse (im2col around the sparse products, on the mask
/// of a `MaskSource`) when the cost model expects it to be faster, dense OpenBLAS otherwise.
/// Owns the weight's sparse form, like `LinearProducts`. The engine's `Conv2d` and the C ABI's
/// layer handles both run through it. Not thread-safe.
public final class Conv2dProducts {
  public let inChannels: Int
  public let outChannels: Int
  public let kernelHeight: Int
  public let kernelWidth: Int
  /// Which kernels the last forward and backward used.
  public private(set) var execution = SparseExecutionState()
  /// Whether the last backward gave every image of dx to its `dxObserver` (the sparse kernels
  /// do; the dense path does not).
  public private(set) var observedInputGradient = false
  /// Whether the last forward gave every image of y to its `yObserver` (the sparse kernels do).
  public private(set) var observedOutput = false
  private lazy var format = SparseWeightFormat(
    rows: outChannels, cols: inChannels * kernelHeight * kernelWidth)
  private var unusedWeightGradient: Tensor?
  /// A produced output gradient and a mapped input written in full for the dense kernels.
  private var producedGradient: Tensor?
  private var mappedInput: Tensor?
  private lazy var fullMask = FullMask(count: outChannels * inChannels * kernelHeight * kernelWidth)

  public init(inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int) {
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernelHeight = kernelHeight
    self.kernelWidth = kernelWidth
  }

  /// Whether a forward and a backward of `shape` would run on the sparse kernels at the mask's
  /// current density (the same decision `forward` and `backward` make).
  public func plan(shape s: ck_conv_shape, mask: MaskSource?) -> SparseExecutionState {
    guard let mask else { return SparseExecutionState() }
    var plan = SparseExecutionState()
    plan.forwardSparse = prefersSparse(.forward, s, mask)
    plan.backwardSparse =
      !mask.needsDenseGradient && prefersSparse(.inputGradient, s, mask)
      && prefersSparse(.weightGradient, s, mask)
    return plan
  }

  /// Whether both the forward and the backward of `shape` run on the sparse kernels (the
  /// decisions `forward` and `backward` make, the full mask of the direct kernels included).
  public func runsSparse(shape s: ck_conv_shape, mask: MaskSource?) -> Bool {
    let forward = (mask ?? directMask(s, .forward)).map { plan(shape: s, mask: $0).forwardSparse }
    let backward = (mask ?? directMask(s, .inputGradient, .weightGradient)).map {
      plan(shape: s, mask: $0).backwardSparse
    }
    return forward == true && backward == true
  }

  /// y = conv(x, W) + bias for the batch of `shape` (finished by `ck_conv_shape_finish`), of
  /// map(x) when `xMap` is given (the sparse kernels apply it as they read x; the dense path
  /// writes map(x) in full first). `weights` must be zero outside the mask (nil mask: a dense
  /// layer); the sparse form's values are refreshed from them here. The sparse kernels give
  /// each finished image of y to `yObserver` (`observedOutput`).
  public func forward(
    shape: ck_conv_shape, x: UnsafePointer<Float>, xMap: UnsafePointer<ck_channel_affine>? = nil,
    weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?, mask: MaskSource?,
    y: UnsafeMutablePointer<Float>, yObserver: UnsafePointer<ck_image_observer>? = nil
  ) {
    var s = shape
    format.fresh = false
    execution.forwardSparse = false
    observedOutput = false
    if let mask = mask ?? directMask(s, .forward), plan(shape: s, mask: mask).forwardSparse {
      format.refresh(weights: weights, source: mask)
      ck_sparse_conv2d_forward_mapped(&s, format.handle, x, xMap, bias, yObserver, y)
      execution.forwardSparse = true
      observedOutput = yObserver != nil
      return
    }
    ck_conv2d_forward(&s, mapped(x, xMap, shape: s), weights, bias, y)
  }

  /// x, or map(x) written in full into a buffer of this object when a map is given.
  private func mapped(
    _ x: UnsafePointer<Float>, _ xMap: UnsafePointer<ck_channel_affine>?, shape s: ck_conv_shape
  ) -> UnsafePointer<Float> {
    guard let xMap else { return x }
    let shape = [Int(s.batch), Int(s.in_channels), Int(s.in_height), Int(s.in_width)]
    let full = Tensor.reuse(mappedInput, shape: shape)
    mappedInput = full
    ck_channel_affine_apply(
      s.batch, s.in_channels, s.in_height * s.in_width, x, xMap, ck_get_threads(), full.data)
    return UnsafePointer(full.data)
  }

  /// The output gradient a backward reads: stored, or produced plane by plane by a source
  /// (`ck_plane_source`, e.g. the next layer's deferred input gradient).
  public enum OutputGradient {
    case stored(UnsafePointer<Float>)
    case produced(UnsafePointer<ck_plane_source>)
  }

  /// Gradients of the last forward: dx (NCHW), dw (OIHW) and db [out], each written when not
  /// nil; dw as in `LinearProducts.backward` (kept positions only on the sparse path).
  public func backward(
    shape: ck_conv_shape, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
    weights: UnsafePointer<Float>, mask: MaskSource?, dx: UnsafeMutablePointer<Float>?,
    dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
    maskWeightGradient: Bool = false
  ) {
    backward(
      shape: shape, x: x, xMap: nil, dy: .stored(dy), weights: weights, mask: mask, dx: dx,
      dxAdd: nil, dw: dw, db: db, maskWeightGradient: maskWeightGradient)
  }

  /// The same for the forward's input map(x) (`xMap`, as the forward's) and an output gradient
  /// stored or produced: the sparse kernels map x and produce each dY plane as they read them
  /// (`ck_sparse_conv2d_backward_fused`); the dense path has both written in full first. The
  /// sparse kernels give each finished image of dx to `dxObserver` (`observedInputGradient`).
  /// `dxAdd` (x's shape) is added to dx: by the sparse kernels image by image as they write
  /// it, on the dense path afterwards.
  public func backward(
    shape: ck_conv_shape, x: UnsafePointer<Float>, xMap: UnsafePointer<ck_channel_affine>?,
    dy: OutputGradient,
    weights: UnsafePointer<Float>, mask: MaskSource?, dx: UnsafeMutablePointer<Float>?,
    dxAdd: UnsafePointer<Float>?, dxObserver: UnsafePointer<ck_image_observer>? = nil,
    dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?,
    maskWeightGradient: Bool = false
  ) {
    var s = shape
    execution.backwardSparse = false
    observedInputGradient = false
    if let mask = mask ?? directMask(s, .inputGradient, .weightGradient),
      plan(shape: s, mask: mask).backwardSparse
    {
      format.refresh(weights: weights, source: mask)
      let values = dw == nil ? nil : format.gradientValues()
      switch dy {
      case .stored(let dy):
        ck_sparse_conv2d_backward_fused(
          &s, format.handle, x, xMap, dy, nil, dx, dxAdd, dxObserver, values, db)
      case .produced(let source):
        ck_sparse_conv2d_backward_fused(
          &s, format.handle, x, xMap, nil, source, dx, dxAdd, dxObserver, values, db)
      }
      observedInputGradient = dx != nil && dxObserver != nil
      if let dw, let values { ck_sparse_scatter(format.handle, values, dw) }
      execution.backwardSparse = true
      return
    }
    let gradient = dw ?? weightGradientScratch()
    let x = mapped(x, xMap, shape: s)
    switch dy {
    case .stored(let dy): ck_conv2d_backward(&s, x, weights, dy, dx, gradient, db)
    case .produced(let source):
      let full = Tensor.reuse(
        producedGradient,
        shape: [
          Int(source.pointee.n), Int(source.pointee.c), Int(source.pointee.h),
          Int(source.pointee.w),
        ])
      producedGradient = full
      ck_plane_source_fill(source, ck_get_threads(), full.data)
      ck_conv2d_backward(&s, x, weights, full.data, dx, gradient, db)
    }
    if let dx, let dxAdd {
      ck_add_inplace(Int(s.batch * s.in_channels * s.in_height * s.in_width), dxAdd, dx)
    }
    if maskWeightGradient, let mask, !mask.needsDenseGradient, let dw {
      SparseWeightFormat.zero(dw, outside: mask)
    }
  }

  private func weightGradientScratch() -> UnsafeMutablePointer<Float> {
    let t = Tensor.reuse(
      unusedWeightGradient, shape: [outChannels, inChannels, kernelHeight, kernelWidth])
    unusedWeightGradient = t
    return t.data
  }

  private func prefersSparse(_ op: SparseOp, _ s: ck_conv_shape, _ mask: MaskSource) -> Bool {
    SparseWeightFormat.prefers(
      op.kernelOp, m: outChannels, k: inChannels * kernelHeight * kernelWidth,
      n: Int(s.out_height * s.out_width), density: mask.density) || directPreferred(s, op)
  }

  /// Whether the direct sparse kernels beat the dense convolution for `op` even with every
  /// weight kept (then a masked layer stays sparse at any density).
  private func directPreferred(_ s: ck_conv_shape, _ op: SparseOp) -> Bool {
    guard SparseDispatch.mode == .automatic else { return false }
    var shape = s
    return ck_sparse_conv2d_direct_preferred(&shape, op.kernelOp) != 0
  }

  /// For a layer without a mask: the full mask when the direct kernels beat dense for `ops`.
  private func directMask(_ s: ck_conv_shape, _ ops: SparseOp...) -> MaskSource? {
    ops.allSatisfy { directPreferred(s, $0) } ? fullMask : nil
  }
}
