// coppice_layer_*: a host's own linear and convolution layers on the sparse kernels.
import CCoppiceABI
import CCoppiceKernels
import Coppice
import Foundation

/// A mask fixed at creation, for layers without a sparsifier.
final class FixedMask: MaskSource {
  let mask: [UInt8]
  let maskVersion = 0
  let density: Double
  let needsDenseGradient = false

  init(_ bytes: UnsafePointer<UInt8>, count: Int) {
    mask = (0..<count).map { bytes[$0] != 0 ? 1 : 0 }
    density = count == 0 ? 1 : Double(mask.reduce(0) { $0 + Int($1) }) / Double(count)
  }
}

/// The object behind a coppice_layer handle: the products of one linear or convolution layer,
/// the host's weight buffer and where the mask comes from.
final class LayerHandle {
  enum Products {
    case linear(LinearProducts)
    /// With the (square) stride and padding.
    case conv2d(Conv2dProducts, stride: Int, padding: Int)
  }

  let products: Products
  /// The host's weights: the registered buffer, or the fixed-mask layer's.
  let hostWeights: UnsafePointer<Float>
  let count: Int
  let mask: MaskSource
  /// Fixed-mask layers: the host's weights times the mask, refreshed at every forward (a
  /// bound layer's sparsifier keeps the host's buffer masked itself).
  private let maskedWeights: UnsafeMutablePointer<Float>?

  init(products: Products, weights: UnsafePointer<Float>, count: Int, mask: MaskSource) {
    self.products = products
    hostWeights = weights
    self.count = count
    self.mask = mask
    maskedWeights = mask is FixedMask ? .allocate(capacity: max(1, count)) : nil
  }

  deinit { maskedWeights?.deallocate() }

  /// The weights of the coming forward (the masked copy refreshed for fixed masks).
  func weightsForForward() -> UnsafePointer<Float> {
    guard let maskedWeights else { return hostWeights }
    mask.mask.withUnsafeBufferPointer { m in
      for i in 0..<count { maskedWeights[i] = m[i] != 0 ? hostWeights[i] : 0 }
    }
    return UnsafePointer(maskedWeights)
  }

  /// The weights the last forward used.
  var weightsOfLastForward: UnsafePointer<Float> {
    guard let maskedWeights else { return hostWeights }
    return UnsafePointer(maskedWeights)
  }

  var execution: SparseExecutionState {
    switch products {
    case .linear(let p): return p.execution
    case .conv2d(let p, _, _): return p.execution
    }
  }

  func linear() throws -> LinearProducts {
    guard case .linear(let p) = products else {
      throw APIError(.invalidArgument, "this is a conv2d layer, not a linear one")
    }
    return p
  }

  func conv2d() throws -> (products: Conv2dProducts, stride: Int, padding: Int) {
    guard case .conv2d(let p, let stride, let padding) = products else {
      throw APIError(.invalidArgument, "this is a linear layer, not a conv2d one")
    }
    return (p, stride, padding)
  }

  /// The finished convolution shape of a batch of height × width inputs.
  func convShape(batch: Int64, height: Int64, width: Int64) throws -> ck_conv_shape {
    let (p, stride, padding) = try conv2d()
    try checkSizes([("batch", batch), ("height", height), ("width", width)])
    guard height <= 1 << 20, width <= 1 << 20,
      product([batch, Int64(p.inChannels), height, width], below: 1 << 40) != nil
    else {
      throw APIError(
        .invalidArgument, "input of \(batch)×\(p.inChannels)×\(height)×\(width) is too large")
    }
    var s = ck_conv_shape(
      batch: Int32(batch), in_channels: Int32(p.inChannels), in_height: Int32(height),
      in_width: Int32(width), out_channels: Int32(p.outChannels), kernel_h: Int32(p.kernelHeight),
      kernel_w: Int32(p.kernelWidth), stride: Int32(stride), padding: Int32(padding),
      out_height: 0, out_width: 0)
    guard ck_conv_shape_finish(&s) == 0, s.out_height >= 1, s.out_width >= 1 else {
      throw APIError(
        .shapeMismatch,
        "input \(height)×\(width) is smaller than the \(p.kernelHeight)×\(p.kernelWidth) kernel "
          + "with padding \(padding)")
    }
    return s
  }
}

/// Every size must be in 1...2^31−1.
func checkSizes(_ sizes: [(String, Int64)]) throws {
  for (name, value) in sizes where value < 1 || value > Int64(Int32.max) {
    throw APIError(.invalidArgument, "\(name) must be in 1...2^31−1, got \(value)")
  }
}

/// The product of positive sizes, or nil when it reaches `limit` (checked for overflow, so
/// absurd sizes are reported, never trapped on).
func product(_ sizes: [Int64], below limit: Int64) -> Int64? {
  var total: Int64 = 1
  for size in sizes {
    let (next, overflow) = total.multipliedReportingOverflow(by: size)
    guard !overflow, next < limit else { return nil }
    total = next
  }
  return total
}

/// A linear layer's batch: in 1...2^31−1, and the activations below 2^40 floats.
private func checkBatch(_ batch: Int64, _ p: LinearProducts) throws {
  try checkSizes([("batch", batch)])
  guard product([batch, Int64(max(p.inFeatures, p.outFeatures))], below: 1 << 40) != nil else {
    throw APIError(.invalidArgument, "batch \(batch) is too large")
  }
}

func defaultConvParams() -> coppice_conv2d_params {
  var p = coppice_conv2d_params()
  p.struct_size = MemoryLayout<coppice_conv2d_params>.size
  p.stride_h = 1
  p.stride_w = 1
  p.pad_h = 0
  p.pad_w = 0
  p.dilation_h = 1
  p.dilation_w = 1
  return p
}

/// (stride, padding) of a supported geometry.
private func convGeometry(_ params: UnsafePointer<coppice_conv2d_params>?) throws -> (Int, Int) {
  let p =
    try params.map { try readConfig($0, defaults: defaultConvParams(), what: "params") }
    ?? defaultConvParams()
  guard p.stride_h >= 1, p.stride_w >= 1, p.pad_h >= 0, p.pad_w >= 0, p.dilation_h >= 1,
    p.dilation_w >= 1, p.stride_h <= 1 << 16, p.pad_h <= 1 << 16, p.pad_w <= 1 << 16
  else {
    throw APIError(
      .invalidArgument, "stride and dilation must be >= 1 and padding >= 0 (and below 2^16)")
  }
  guard p.dilation_h == 1, p.dilation_w == 1 else {
    throw APIError(.unsupported, "dilation \(p.dilation_h)×\(p.dilation_w): only 1 is supported")
  }
  guard p.stride_h == p.stride_w, p.pad_h == p.pad_w else {
    throw APIError(
      .unsupported,
      "stride \(p.stride_h)×\(p.stride_w), padding \(p.pad_h)×\(p.pad_w): only equal values on "
        + "both axes are supported")
  }
  return (Int(p.stride_h), Int(p.pad_h))
}

@_cdecl("coppice_conv2d_params_init")
public func cConv2dParamsInit(_ params: UnsafeMutablePointer<coppice_conv2d_params>?) {
  params?.pointee = defaultConvParams()
}

/// A registered parameter of a sparsifier handle, with the rank the layer needs.
private func boundTarget(
  _ sparsifier: OpaquePointer?, _ name: UnsafePointer<CChar>?, rank: Int, what: String
) throws -> SparseTarget {
  let h = try Handles.resolve(sparsifier, as: SparsifierHandle.self, what: "sparsifier")
  let t = try h.target(named: name)
  guard t.shape.count == rank, t.count >= 1, t.count < Int(Int32.max) else {
    throw APIError(
      .shapeMismatch,
      "parameter '\(t.name)' has shape \(t.shape); a \(what) weight has \(rank) "
        + "dimensions")
  }
  return t
}

@_cdecl("coppice_layer_linear_create")
public func cLayerLinearCreate(
  _ sparsifier: OpaquePointer?, _ name: UnsafePointer<CChar>?,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_layer_linear_create") {
    let out = try output(out, "out")
    out.pointee = nil
    let t = try boundTarget(sparsifier, name, rank: 2, what: "linear")
    let products = LinearProducts(inFeatures: t.shape[1], outFeatures: t.shape[0])
    out.pointee = Handles.register(
      LayerHandle(products: .linear(products), weights: t.weights, count: t.count, mask: t))
  }
}

@_cdecl("coppice_layer_conv2d_create")
public func cLayerConv2dCreate(
  _ sparsifier: OpaquePointer?, _ name: UnsafePointer<CChar>?,
  _ params: UnsafePointer<coppice_conv2d_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_layer_conv2d_create") {
    let out = try output(out, "out")
    out.pointee = nil
    let t = try boundTarget(sparsifier, name, rank: 4, what: "conv2d")
    let (stride, padding) = try convGeometry(params)
    let products = Conv2dProducts(
      inChannels: t.shape[1], outChannels: t.shape[0], kernelHeight: t.shape[2],
      kernelWidth: t.shape[3])
    out.pointee = Handles.register(
      LayerHandle(
        products: .conv2d(products, stride: stride, padding: padding), weights: t.weights,
        count: t.count, mask: t))
  }
}

@_cdecl("coppice_layer_linear_create_masked")
public func cLayerLinearCreateMasked(
  _ outFeatures: Int64, _ inFeatures: Int64, _ weights: UnsafePointer<Float>?,
  _ mask: UnsafePointer<UInt8>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_layer_linear_create_masked") {
    let out = try output(out, "out")
    out.pointee = nil
    try checkSizes([("out_features", outFeatures), ("in_features", inFeatures)])
    guard let cells = product([outFeatures, inFeatures], below: Int64(Int32.max)) else {
      throw APIError(.invalidArgument, "out_features·in_features must be < 2^31")
    }
    let weights = try input(weights, "weights")
    let mask = try input(mask, "mask")
    let count = Int(cells)
    let products = LinearProducts(inFeatures: Int(inFeatures), outFeatures: Int(outFeatures))
    out.pointee = Handles.register(
      LayerHandle(
        products: .linear(products), weights: weights, count: count,
        mask: FixedMask(mask, count: count)))
  }
}

@_cdecl("coppice_layer_conv2d_create_masked")
public func cLayerConv2dCreateMasked(
  _ shape: UnsafePointer<Int64>?, _ weights: UnsafePointer<Float>?, _ mask: UnsafePointer<UInt8>?,
  _ params: UnsafePointer<coppice_conv2d_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_layer_conv2d_create_masked") {
    let out = try output(out, "out")
    out.pointee = nil
    let shape = try input(shape, "shape")
    let dims = (0..<4).map { shape[$0] }
    try checkSizes(zip(["out_channels", "in_channels", "kernel_h", "kernel_w"], dims).map { $0 })
    guard dims[2] <= 1 << 16, dims[3] <= 1 << 16,
      let cells = product(dims, below: Int64(Int32.max))
    else { throw APIError(.invalidArgument, "weight of \(dims) is too large") }
    let weights = try input(weights, "weights")
    let mask = try input(mask, "mask")
    let (stride, padding) = try convGeometry(params)
    let count = Int(cells)
    let products = Conv2dProducts(
      inChannels: Int(dims[1]), outChannels: Int(dims[0]), kernelHeight: Int(dims[2]),
      kernelWidth: Int(dims[3]))
    out.pointee = Handles.register(
      LayerHandle(
        products: .conv2d(products, stride: stride, padding: padding), weights: weights,
        count: count, mask: FixedMask(mask, count: count)))
  }
}

@_cdecl("coppice_layer_destroy")
public func cLayerDestroy(_ layer: OpaquePointer?) {
  Handles.destroy(layer, as: LayerHandle.self)
}

@_cdecl("coppice_layer_linear_forward")
public func cLayerLinearForward(
  _ layer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64,
  _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_layer_linear_forward") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let p = try h.linear()
    try checkBatch(batch, p)
    let x = try input(x, "x")
    let y = try output(y, "y")
    p.forward(
      x: x, batch: Int(batch), weights: h.weightsForForward(), bias: bias, mask: h.mask, y: y)
  }
}

@_cdecl("coppice_layer_linear_backward")
public func cLayerLinearBackward(
  _ layer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>?,
  _ batch: Int64, _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?,
  _ db: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_layer_linear_backward") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let p = try h.linear()
    try checkBatch(batch, p)
    let x = try input(x, "x")
    let dy = try input(dy, "dy")
    p.backward(
      x: x, dy: dy, batch: Int(batch), weights: h.weightsOfLastForward, mask: h.mask, dx: dx,
      dw: dw, db: db, maskWeightGradient: true)
  }
}

@_cdecl("coppice_layer_conv2d_output_size")
public func cLayerConv2dOutputSize(
  _ layer: OpaquePointer?, _ height: Int64, _ width: Int64,
  _ outHeight: UnsafeMutablePointer<Int64>?, _ outWidth: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_layer_conv2d_output_size") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let s = try h.convShape(batch: 1, height: height, width: width)
    try output(outHeight, "out_height").pointee = Int64(s.out_height)
    try output(outWidth, "out_width").pointee = Int64(s.out_width)
  }
}

@_cdecl("coppice_layer_conv2d_forward")
public func cLayerConv2dForward(
  _ layer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ batch: Int64, _ height: Int64,
  _ width: Int64, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_layer_conv2d_forward") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let s = try h.convShape(batch: batch, height: height, width: width)
    let x = try input(x, "x")
    let y = try output(y, "y")
    try h.conv2d().products.forward(
      shape: s, x: x, weights: h.weightsForForward(), bias: bias, mask: h.mask, y: y)
  }
}

@_cdecl("coppice_layer_conv2d_backward")
public func cLayerConv2dBackward(
  _ layer: OpaquePointer?, _ x: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>?,
  _ batch: Int64, _ height: Int64, _ width: Int64, _ dx: UnsafeMutablePointer<Float>?,
  _ dw: UnsafeMutablePointer<Float>?, _ db: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_layer_conv2d_backward") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let s = try h.convShape(batch: batch, height: height, width: width)
    let x = try input(x, "x")
    let dy = try input(dy, "dy")
    try h.conv2d().products.backward(
      shape: s, x: x, dy: dy, weights: h.weightsOfLastForward, mask: h.mask, dx: dx, dw: dw,
      db: db, maskWeightGradient: true)
  }
}

@_cdecl("coppice_layer_plan")
public func cLayerPlan(
  _ layer: OpaquePointer?, _ batch: Int64, _ height: Int64, _ width: Int64,
  _ forwardSparse: UnsafeMutablePointer<Int32>?, _ backwardSparse: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_layer_plan") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    let plan: SparseExecutionState
    switch h.products {
    case .linear(let p):
      try checkBatch(batch, p)
      plan = p.plan(batch: Int(batch), mask: h.mask)
    case .conv2d(let p, _, _):
      plan = p.plan(
        shape: try h.convShape(batch: batch, height: height, width: width), mask: h.mask)
    }
    forwardSparse?.pointee = plan.forwardSparse ? 1 : 0
    backwardSparse?.pointee = plan.backwardSparse ? 1 : 0
  }
}

@_cdecl("coppice_layer_execution")
public func cLayerExecution(
  _ layer: OpaquePointer?, _ forwardSparse: UnsafeMutablePointer<Int32>?,
  _ backwardSparse: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_layer_execution") {
    let h = try Handles.resolve(layer, as: LayerHandle.self, what: "layer")
    forwardSparse?.pointee = h.execution.forwardSparse ? 1 : 0
    backwardSparse?.pointee = h.execution.backwardSparse ? 1 : 0
  }
}
