// coppice_batchnorm2d_* and coppice_maxpool2d_*: the batch-norm (+ ReLU) and max-pooling
// operations of a host's own convolution blocks, on the kernels the built-in engine uses.
import CCoppiceKernels
import Foundation

/// An NCHW shape [n, c, h, w] from the host: every size in 1...2^31−1, n·c and h·w below 2^31
/// (the kernels index planes and channels with 32-bit integers), n·c·h·w below 2^40.
private struct ImageShape {
  let n: Int32, c: Int32, h: Int32, w: Int32

  init(_ shape: UnsafePointer<Int64>?) throws {
    guard let shape else { throw APIError(.invalidArgument, "shape is NULL") }
    try checkSizes([("n", shape[0]), ("c", shape[1]), ("h", shape[2]), ("w", shape[3])])
    guard product([shape[0], shape[1]], below: Int64(Int32.max)) != nil,
      product([shape[2], shape[3]], below: Int64(Int32.max)) != nil,
      product([shape[0], shape[1], shape[2], shape[3]], below: 1 << 40) != nil
    else {
      throw APIError(
        .invalidArgument,
        "shape [\(shape[0]), \(shape[1]), \(shape[2]), \(shape[3])] is too large "
          + "(n·c and h·w must stay below 2^31, n·c·h·w below 2^40)")
    }
    (n, c, h, w) = (Int32(shape[0]), Int32(shape[1]), Int32(shape[2]), Int32(shape[3]))
  }
}

@_cdecl("coppice_batchnorm2d_forward")
public func cBatchNorm2dForward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ beta: UnsafePointer<Float>?, _ eps: Float, _ momentum: Float,
  _ runningMean: UnsafeMutablePointer<Float>?, _ runningVar: UnsafeMutablePointer<Float>?,
  _ saveMean: UnsafeMutablePointer<Float>?, _ saveInvstd: UnsafeMutablePointer<Float>?,
  _ relu: Int32, _ y: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_batchnorm2d_forward") {
    let s = try ImageShape(shape)
    try checkNormSettings(eps: eps, momentum: momentum, runningMean, runningVar)
    let (x, gamma, beta) = (try input(x, "x"), try input(gamma, "gamma"), try input(beta, "beta"))
    let (mean, invstd) = (try output(saveMean, "save_mean"), try output(saveInvstd, "save_invstd"))
    let y = try output(y, "y")
    ck_batchnorm_forward_train(
      s.n, s.c, s.h * s.w, x, gamma, beta, eps, momentum, runningMean, runningVar, mean, invstd,
      nil, y, relu != 0 ? 1 : 0)
  }
}

@_cdecl("coppice_batchnorm2d_backward")
public func cBatchNorm2dBackward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ saveMean: UnsafePointer<Float>?, _ saveInvstd: UnsafePointer<Float>?,
  _ dy: UnsafePointer<Float>?, _ reluOutput: UnsafePointer<Float>?,
  _ dx: UnsafeMutablePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
  _ dbeta: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_batchnorm2d_backward") {
    let a = try BatchNormGradientArguments(
      shape, x, gamma, saveMean, saveInvstd, dy, dgamma, dbeta)
    ck_batchnorm_backward(
      a.n, a.c, a.hw, a.x, a.gamma, a.mean, a.invstd, a.dy, reluOutput, dx, a.dgamma, a.dbeta)
  }
}

@_cdecl("coppice_batchnorm2d_relu_backward")
public func cBatchNorm2dReLUBackward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ beta: UnsafePointer<Float>?, _ saveMean: UnsafePointer<Float>?,
  _ saveInvstd: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>?,
  _ dx: UnsafeMutablePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
  _ dbeta: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_batchnorm2d_relu_backward") {
    let a = try BatchNormGradientArguments(
      shape, x, gamma, saveMean, saveInvstd, dy, dgamma, dbeta)
    let beta = try input(beta, "beta")
    ck_batchnorm_relu_backward(
      a.n, a.c, a.hw, a.x, a.gamma, beta, a.mean, a.invstd, a.dy, dx, a.dgamma, a.dbeta)
  }
}

/// The checked arguments both batch-norm backward entry points share.
private struct BatchNormGradientArguments {
  let n: Int32, c: Int32, hw: Int32
  let x: UnsafePointer<Float>, gamma: UnsafePointer<Float>, dy: UnsafePointer<Float>
  let mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>
  let dgamma: UnsafeMutablePointer<Float>, dbeta: UnsafeMutablePointer<Float>

  init(
    _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
    _ saveMean: UnsafePointer<Float>?, _ saveInvstd: UnsafePointer<Float>?,
    _ dy: UnsafePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
    _ dbeta: UnsafeMutablePointer<Float>?
  ) throws {
    let s = try ImageShape(shape)
    (n, c, hw) = (s.n, s.c, s.h * s.w)
    (self.x, self.gamma, self.dy) = (
      try input(x, "x"), try input(gamma, "gamma"), try input(dy, "dy")
    )
    (mean, invstd) = (try input(saveMean, "save_mean"), try input(saveInvstd, "save_invstd"))
    (self.dgamma, self.dbeta) = (try output(dgamma, "dgamma"), try output(dbeta, "dbeta"))
  }
}

/// Output height and width of a max pooling, after checking its window.
private func poolOutput(_ s: ImageShape, kernel: Int64, stride: Int64, padding: Int64) throws -> (
  Int32, Int32
) {
  guard kernel >= 1, kernel <= Int64(min(s.h, s.w)) + 2 * max(0, padding) else {
    throw APIError(
      .invalidArgument, "kernel must be in 1...(input size + 2·padding), got \(kernel)")
  }
  guard stride >= 1, stride <= Int64(Int32.max) else {
    throw APIError(.invalidArgument, "stride must be in 1...2^31−1, got \(stride)")
  }
  guard padding >= 0, padding <= kernel / 2 else {
    throw APIError(.invalidArgument, "padding must be in 0...kernel/2, got \(padding)")
  }
  let oh = (Int64(s.h) + 2 * padding - kernel) / stride + 1
  let ow = (Int64(s.w) + 2 * padding - kernel) / stride + 1
  return (Int32(oh), Int32(ow))
}

@_cdecl("coppice_maxpool2d_output_size")
public func cMaxPool2dOutputSize(
  _ shape: UnsafePointer<Int64>?, _ kernel: Int64, _ stride: Int64, _ padding: Int64,
  _ height: UnsafeMutablePointer<Int64>?, _ width: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_maxpool2d_output_size") {
    let (oh, ow) = try poolOutput(
      ImageShape(shape), kernel: kernel, stride: stride, padding: padding)
    let (height, width) = (try output(height, "height"), try output(width, "width"))
    height.pointee = Int64(oh)
    width.pointee = Int64(ow)
  }
}

@_cdecl("coppice_maxpool2d_forward")
public func cMaxPool2dForward(
  _ shape: UnsafePointer<Int64>?, _ kernel: Int64, _ stride: Int64, _ padding: Int64,
  _ x: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>?,
  _ argmax: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_maxpool2d_forward") {
    let s = try ImageShape(shape)
    let (oh, ow) = try poolOutput(s, kernel: kernel, stride: stride, padding: padding)
    let x = try input(x, "x")
    let (y, argmax) = (try output(y, "y"), try output(argmax, "argmax"))
    ck_maxpool_forward(
      s.n * s.c, s.h, s.w, Int32(kernel), Int32(stride), Int32(padding), oh, ow, x, y, argmax)
  }
}

@_cdecl("coppice_maxpool2d_backward")
public func cMaxPool2dBackward(
  _ shape: UnsafePointer<Int64>?, _ kernel: Int64, _ stride: Int64, _ padding: Int64,
  _ argmax: UnsafePointer<Int32>?, _ dy: UnsafePointer<Float>?, _ dx: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_maxpool2d_backward") {
    let s = try ImageShape(shape)
    let (oh, ow) = try poolOutput(s, kernel: kernel, stride: stride, padding: padding)
    let (argmax, dy) = (try input(argmax, "argmax"), try input(dy, "dy"))
    let dx = try output(dx, "dx")
    // The winners must lie in their plane (a forged argmax would write out of bounds).
    let cells = Int(s.h) * Int(s.w)
    let count = Int(s.n) * Int(s.c) * Int(oh) * Int(ow)
    for i in 0..<count where argmax[i] >= cells {
      throw APIError(
        .invalidArgument, "argmax[\(i)] = \(argmax[i]) lies outside its \(s.h)×\(s.w) plane")
    }
    ck_maxpool_backward(s.n * s.c, s.h, s.w, oh, ow, argmax, dy, dx)
  }
}

/// The fused block needs a 2×2 window in each plane.
private func pooledPlane(_ s: ImageShape) throws -> Int {
  guard s.h >= 2, s.w >= 2 else {
    throw APIError(
      .invalidArgument, "the planes must be at least 2×2 for a 2×2 pooling, got \(s.h)×\(s.w)")
  }
  return Int(s.h / 2) * Int(s.w / 2)
}

/// eps, momentum and the running statistics (both or neither) as the batch-norm forwards
/// accept them.
private func checkNormSettings(
  eps: Float, momentum: Float, _ runningMean: UnsafeMutablePointer<Float>?,
  _ runningVar: UnsafeMutablePointer<Float>?
) throws {
  guard eps > 0, eps.isFinite else {
    throw APIError(.invalidArgument, "eps must be a positive finite number, got \(eps)")
  }
  guard momentum >= 0, momentum <= 1 else {
    throw APIError(.invalidArgument, "momentum must be in [0, 1], got \(momentum)")
  }
  guard (runningMean == nil) == (runningVar == nil) else {
    throw APIError(
      .invalidArgument, "running_mean and running_var must both be given or both NULL")
  }
}

@_cdecl("coppice_batchnorm2d_relu_maxpool2_forward")
public func cBatchNorm2dReLUMaxPool2Forward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ beta: UnsafePointer<Float>?, _ eps: Float, _ momentum: Float,
  _ runningMean: UnsafeMutablePointer<Float>?, _ runningVar: UnsafeMutablePointer<Float>?,
  _ saveMean: UnsafeMutablePointer<Float>?, _ saveInvstd: UnsafeMutablePointer<Float>?,
  _ y: UnsafeMutablePointer<Float>?, _ winner: UnsafeMutablePointer<UInt8>?
) -> Int32 {
  guarded("coppice_batchnorm2d_relu_maxpool2_forward") {
    let s = try ImageShape(shape)
    _ = try pooledPlane(s)
    try checkNormSettings(eps: eps, momentum: momentum, runningMean, runningVar)
    let (x, gamma, beta) = (try input(x, "x"), try input(gamma, "gamma"), try input(beta, "beta"))
    let (mean, invstd) = (try output(saveMean, "save_mean"), try output(saveInvstd, "save_invstd"))
    let (y, winner) = (try output(y, "y"), try output(winner, "winner"))
    ck_batchnorm_relu_maxpool2_forward_train(
      s.n, s.c, s.h, s.w, x, gamma, beta, eps, momentum, runningMean, runningVar, mean, invstd,
      y, winner)
  }
}

@_cdecl("coppice_batchnorm2d_relu_maxpool2_backward")
public func cBatchNorm2dReLUMaxPool2Backward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ saveMean: UnsafePointer<Float>?, _ saveInvstd: UnsafePointer<Float>?,
  _ y: UnsafePointer<Float>?, _ winner: UnsafePointer<UInt8>?, _ dy: UnsafePointer<Float>?,
  _ dx: UnsafeMutablePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
  _ dbeta: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_batchnorm2d_relu_maxpool2_backward") {
    try normPoolBackward(
      shape, x, gamma, nil, saveMean, saveInvstd, y, winner, dy, dx, dgamma, dbeta)
  }
}

@_cdecl("coppice_batchnorm2d_relu_maxpool2_backward_with_beta")
public func cBatchNorm2dReLUMaxPool2BackwardWithBeta(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ beta: UnsafePointer<Float>?, _ saveMean: UnsafePointer<Float>?,
  _ saveInvstd: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?,
  _ winner: UnsafePointer<UInt8>?, _ dy: UnsafePointer<Float>?,
  _ dx: UnsafeMutablePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
  _ dbeta: UnsafeMutablePointer<Float>?
) -> Int32 {
  guarded("coppice_batchnorm2d_relu_maxpool2_backward_with_beta") {
    try normPoolBackward(
      shape, x, gamma, try input(beta, "beta"), saveMean, saveInvstd, y, winner, dy, dx, dgamma,
      dbeta)
  }
}

/// The fused backward's checks and call (`beta` nil: the path without it).
private func normPoolBackward(
  _ shape: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ gamma: UnsafePointer<Float>?,
  _ beta: UnsafePointer<Float>?, _ saveMean: UnsafePointer<Float>?,
  _ saveInvstd: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?,
  _ winner: UnsafePointer<UInt8>?, _ dy: UnsafePointer<Float>?,
  _ dx: UnsafeMutablePointer<Float>?, _ dgamma: UnsafeMutablePointer<Float>?,
  _ dbeta: UnsafeMutablePointer<Float>?
) throws {
  let s = try ImageShape(shape)
  let plane = try pooledPlane(s)
  let (x, gamma, dy) = (try input(x, "x"), try input(gamma, "gamma"), try input(dy, "dy"))
  let (mean, invstd) = (try input(saveMean, "save_mean"), try input(saveInvstd, "save_invstd"))
  let (y, winner) = (try input(y, "y"), try input(winner, "winner"))
  let (dgamma, dbeta) = (try output(dgamma, "dgamma"), try output(dbeta, "dbeta"))
  // A forged winner would address a cell outside its window.
  let count = Int(s.n) * Int(s.c) * plane
  for i in 0..<count where winner[i] > 3 {
    throw APIError(.invalidArgument, "winner[\(i)] = \(winner[i]) is not a cell of a 2×2 window")
  }
  ck_batchnorm_relu_maxpool2_backward(
    s.n, s.c, s.h, s.w, x, gamma, beta, mean, invstd, y, winner, dy, dx, dgamma, dbeta)
}
