import CCoppiceKernels
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity

/// The fused layers against the layers they replace, and against finite differences.
final class FusedLayerTests: XCTestCase {
  override func setUp() { Threads.set(2) }

  private func normReLU(_ channels: Int, seed: UInt64) -> BatchNorm2d {
    let bn = BatchNorm2d(name: "bn", channels: channels, relu: true)
    let g = randomTensor([channels], seed: seed)
    let b = randomTensor([channels], seed: seed + 1)
    for i in 0..<channels {
      bn.gamma.value[i] = 1 + 0.5 * g[i]
      bn.beta.value[i] = 0.5 * b[i]
    }
    return bn
  }

  /// A 3×3 "same" convolution whose weight is masked by a random `TestMask` of `density`
  /// (returned too: the layer holds its mask weakly).
  private func maskedConv(
    _ inChannels: Int, _ outChannels: Int, bias: Bool = false, density: Double, seed: UInt64
  ) -> (Conv2d, TestMask) {
    var rng = SeededGenerator(seed: seed)
    let conv = Conv2d(
      name: "c", inChannels: inChannels, outChannels: outChannels, kernelSize: 3, padding: 1,
      bias: bias, rng: &rng)
    let mask = TestMask(count: conv.weight.count, density: density, seed: seed + 1)
    for i in 0..<conv.weight.count where mask.mask[i] == 0 { conv.weight.value[i] = 0 }
    conv.maskSource = mask
    return (conv, mask)
  }

  /// Same outputs and running statistics as BatchNorm2d+ReLU then MaxPool2d, the same
  /// gradients to rounding; even and odd planes, with ties (constant regions) and without.
  func testBatchNormReLUMaxPoolMatchesTheTwoLayers() {
    // Planes up to 32 wide run the window vectors (all rows but the last), others the loops.
    for shape in [
      [4, 3, 6, 8], [3, 5, 7, 5], [2, 64, 28, 28], [1, 2, 2, 2], [3, 6, 14, 14], [2, 3, 12, 32],
      [2, 3, 9, 30], [2, 2, 6, 34],
    ] {
      let channels = shape[1]
      let fused = BatchNormReLUMaxPool(
        norm: normReLU(channels, seed: 21), pool: MaxPool2d(kernelSize: 2))
      let bn = normReLU(channels, seed: 21)
      let pool = MaxPool2d(kernelSize: 2)
      let x = randomTensor(shape, seed: 5)
      for i in stride(from: 0, to: x.count, by: 7) { x[i] = 0.25 }  // ties inside windows
      for step in 0..<2 {
        let y = fused.forward(x, training: true)
        let reference = pool.forward(bn.forward(x, training: true), training: true)
        XCTAssertEqual(y.shape, reference.shape)
        XCTAssertEqual(y.array, reference.array, "\(shape) step \(step): outputs")
        XCTAssertEqual(fused.norm.runningMean.array, bn.runningMean.array)
        XCTAssertEqual(fused.norm.runningVar.array, bn.runningVar.array)
        let dy = randomTensor(y.shape, seed: 9 + UInt64(step))
        let dx = fused.backward(dy)
        let dxReference = bn.backward(pool.backward(dy))
        assertClose(dx, dxReference, "\(shape) dx")
        assertClose(fused.norm.gamma.grad, bn.gamma.grad, "\(shape) dγ")
        assertClose(fused.norm.beta.grad, bn.beta.grad, "\(shape) dβ")
      }
      // Evaluation runs the two layers with the running statistics.
      XCTAssertEqual(
        fused.forward(x, training: false).array,
        pool.forward(bn.forward(x, training: false), training: false).array)
    }
  }

  /// A convolution followed by BN+ReLU+pool in a Sequential: the convolution produces the
  /// batch norm's input gradient plane by plane (`DeferredGradient`) and every gradient is bit
  /// for bit the one of the two backwards run in turn — sparse (by image, or the whole
  /// gradient written first on one thread) and dense; a γ tiny against its β falls back to the
  /// stored gradient.
  func testConvolutionProducesTheDeferredBatchNormGradient() {
    defer { SparseDispatch.mode = .automatic }
    for (threads, mode, tinyGamma) in [
      (2, SparseDispatch.Mode.alwaysSparse, false), (1, .alwaysSparse, false),
      (2, .alwaysDense, false), (2, .alwaysSparse, true),
    ] {
      Threads.set(threads)
      SparseDispatch.mode = mode
      func pair() -> (Conv2d, BatchNormReLUMaxPool, TestMask) {
        let (conv, mask) = maskedConv(3, 5, density: 0.4, seed: 12)
        let norm = BatchNormReLUMaxPool(
          norm: normReLU(5, seed: 14), pool: MaxPool2d(kernelSize: 2))
        if tinyGamma { norm.norm.gamma.value[2] = 1e-6 }
        return (conv, norm, mask)
      }
      let (conv, norm, mask) = pair()
      let (conv2, norm2, mask2) = pair()
      _ = (mask, mask2)
      let net = Sequential([conv, norm])
      let x = randomTensor([4, 3, 8, 10], seed: 15)
      let y = net.forward(x, training: true)
      let y2 = norm2.forward(conv2.forward(x, training: true), training: true)
      XCTAssertEqual(y.array, y2.array)
      let dy = randomTensor(y.shape, seed: 16)
      let deferred = norm2.backwardDeferringInputGradient(dy, to: conv2)
      XCTAssertEqual(deferred == nil, tinyGamma, "threads \(threads) \(mode)")
      let dx = net.backward(dy).array
      let dx2 = conv2.backward(norm2.backward(dy)).array
      let what = "threads \(threads) \(mode) tiny γ \(tinyGamma)"
      XCTAssertEqual(dx, dx2, what)
      XCTAssertEqual(conv.weight.grad.array, conv2.weight.grad.array, what)
      XCTAssertEqual(norm.norm.gamma.grad.array, norm2.norm.gamma.grad.array, what)
      XCTAssertEqual(norm.norm.beta.grad.array, norm2.norm.beta.grad.array, what)
      XCTAssertEqual(conv.execution.backwardSparse, mode == .alwaysSparse, what)
      if let deferred {
        let full = Tensor(shape: deferred.shape)
        deferred.fill(full)
        XCTAssertEqual(full.array, norm2.backward(dy).array, what)
      }
    }
    Threads.set(2)
  }

  /// conv → BN(+ReLU) → conv → BN+ReLU+pool → conv in a Sequential: the first and second
  /// convolutions' forwards hand each image of their output to the batch norm after them,
  /// which takes its statistics' sums there (`statisticsObserver`), and the second and third
  /// convolutions' backwards hand each image of their input gradient to the layer before them,
  /// which takes its backward's sums there (`imageSumsObserver`); outputs, running statistics
  /// and every gradient are bit for bit
  /// the one of the layers run one by one (sparse by image, on one thread, and dense, where the
  /// batch norm takes the sums itself), with and without ReLU, for a first convolution that
  /// wants its input gradient or not (the batch norm's input gradient is then produced plane
  /// by plane as the first convolution reads it, `backwardDeferringInputGradient`, either way).
  func testConvolutionTakesTheBatchNormSumsOfItsInputGradient() {
    defer {
      SparseDispatch.mode = .automatic
      Threads.set(2)
    }
    for (threads, mode, relu, firstWantsDX) in [
      (2, SparseDispatch.Mode.alwaysSparse, true, true), (2, .alwaysSparse, false, true),
      (2, .alwaysSparse, true, false), (1, .alwaysSparse, true, true),
      (2, .alwaysDense, true, true),
    ] {
      Threads.set(threads)
      SparseDispatch.mode = mode
      func layers() -> [Layer] {
        let (c1, m1) = maskedConv(3, 6, density: 0.5, seed: 40)
        let (c2, m2) = maskedConv(6, 5, density: 0.4, seed: 42)
        masks.append(contentsOf: [m1, m2])
        let bn1 = relu ? normReLU(6, seed: 44) : BatchNorm2d(name: "bn", channels: 6)
        let bn2 = BatchNormReLUMaxPool(norm: normReLU(5, seed: 46), pool: MaxPool2d(kernelSize: 2))
        let (c3, m3) = maskedConv(5, 4, density: 0.5, seed: 47)
        masks.append(m3)
        c1.needsInputGradient = firstWantsDX
        return [c1, bn1, c2, bn2, c3]
      }
      var masks: [TestMask] = []
      let fused = layers()
      let alone = layers()
      let net = Sequential(fused)
      let x = randomTensor([4, 3, 8, 10], seed: 48)
      let y = net.forward(x, training: true)
      let y2 = alone.reduce(x) { $1.forward($0, training: true) }
      let what = "threads \(threads) \(mode) relu \(relu) dx \(firstWantsDX)"
      XCTAssertEqual(y.array, y2.array, what)
      let dy = randomTensor(y.shape, seed: 49)
      let dx = net.backward(dy)
      let dx2 = alone.reversed().reduce(dy) { $1.backward($0) }
      if firstWantsDX { XCTAssertEqual(dx.array, dx2.array, what) }
      XCTAssertEqual((fused[1] as! BatchNorm2d).usedTakenSums, mode == .alwaysSparse, what)
      XCTAssertFalse((alone[1] as! BatchNorm2d).usedTakenSums, what)
      XCTAssertEqual(
        (fused[3] as! BatchNormReLUMaxPool).usedTakenSums, mode == .alwaysSparse, what)
      XCTAssertFalse((alone[3] as! BatchNormReLUMaxPool).usedTakenSums, what)
      // The forward's statistics (and the pooling): taken by the convolutions before them.
      XCTAssertEqual(
        (fused[3] as! BatchNormReLUMaxPool).usedTakenPooling, mode == .alwaysSparse, what)
      for k in [1, 3] {
        let norm = (fused[k] as? BatchNorm2d) ?? (fused[k] as! BatchNormReLUMaxPool).norm
        let normAlone = (alone[k] as? BatchNorm2d) ?? (alone[k] as! BatchNormReLUMaxPool).norm
        if k == 1 { XCTAssertEqual(norm.usedTakenStatistics, mode == .alwaysSparse, what) }
        XCTAssertFalse(normAlone.usedTakenStatistics, what)
        XCTAssertEqual(norm.runningMean.array, normAlone.runningMean.array, what)
        XCTAssertEqual(norm.runningVar.array, normAlone.runningVar.array, what)
      }
      for (a, b) in zip(fused.flatMap(\.parameters), alone.flatMap(\.parameters)) {
        XCTAssertEqual(a.grad.array, b.grad.array, "\(a.name) \(what)")
      }
    }
  }

  /// conv → BN+ReLU+pool: the convolution's forward hands each image to the batch norm + pool,
  /// which takes its statistics' moments and the pooling there (each window's extreme in the
  /// direction of γ's sign, cell 0 where γ = 0) and never reads its input; output, winners,
  /// running statistics and every gradient are bit for bit the stored path's — γ of both
  /// signs and 0, an odd height, planes narrow enough for the 16-lane loop and too wide.
  func testConvolutionTakesThePoolingOfItsOutput() {
    defer { SparseDispatch.mode = .automatic }
    SparseDispatch.mode = .alwaysSparse
    for (shape, threads) in [([3, 2, 9, 12], 2), ([2, 2, 6, 34], 2), ([3, 2, 7, 16], 1)] {
      Threads.set(threads)
      var masks: [TestMask] = []
      func layers() -> [Layer] {
        let (conv, m) = maskedConv(2, 5, density: 0.6, seed: 70)
        masks.append(m)
        let bn = normReLU(5, seed: 71)
        for (i, g) in [1.3, -0.7, 0, 0.5, -2].enumerated() { bn.gamma.value[i] = Float(g) }
        return [conv, BatchNormReLUMaxPool(norm: bn, pool: MaxPool2d(kernelSize: 2))]
      }
      let fused = layers()
      let alone = layers()
      let net = Sequential(fused)
      let what = "\(shape) threads \(threads)"
      for step in 0..<2 {  // the second step's moments are shifted by running means
        let x = randomTensor(shape, seed: 72 + UInt64(step))
        let y = net.forward(x, training: true)
        let y2 = alone.reduce(x) { $1.forward($0, training: true) }
        XCTAssertEqual(y.array, y2.array, what)
        let (f, a) = (fused[1] as! BatchNormReLUMaxPool, alone[1] as! BatchNormReLUMaxPool)
        XCTAssertTrue(f.usedTakenPooling, what)
        XCTAssertFalse(a.usedTakenPooling, what)
        XCTAssertEqual(f.winners, a.winners, what)
        XCTAssertEqual(f.norm.runningMean.array, a.norm.runningMean.array, what)
        XCTAssertEqual(f.norm.runningVar.array, a.norm.runningVar.array, what)
        let dy = randomTensor(y.shape, seed: 80 + UInt64(step))
        XCTAssertEqual(
          net.backward(dy).array, alone.reversed().reduce(dy) { $1.backward($0) }.array, what)
        for (p, q) in zip(fused.flatMap(\.parameters), alone.flatMap(\.parameters)) {
          XCTAssertEqual(p.grad.array, q.grad.array, "\(p.name) \(what)")
        }
      }
    }
    Threads.set(2)
  }

  /// conv → BN+ReLU+pool → Flatten → linear: the linear layer's backward hands each finished
  /// row of its input gradient (an image of the pooled gradient) to the batch norm + pool
  /// through the flattening, which takes its backward's sums there; outputs and gradients are
  /// bit for bit those of the layers run one by one (sparse, and dense where it takes them
  /// itself).
  func testLinearLayerTakesTheBatchNormSumsThroughAFlattening() {
    defer { SparseDispatch.mode = .automatic }
    for mode in [SparseDispatch.Mode.alwaysSparse, .alwaysDense] {
      SparseDispatch.mode = mode
      var masks: [TestMask] = []
      func layers() -> [Layer] {
        let (conv, m) = maskedConv(3, 4, density: 0.5, seed: 60)
        var rng = SeededGenerator(seed: 61)
        let fc = Linear(name: "fc", inFeatures: 4 * 4 * 5, outFeatures: 6, rng: &rng)
        let fcMask = TestMask(count: fc.weight.count, density: 0.3, seed: 62)
        for i in 0..<fc.weight.count where fcMask.mask[i] == 0 { fc.weight.value[i] = 0 }
        fc.maskSource = fcMask
        masks.append(contentsOf: [m, fcMask])
        let norm = BatchNormReLUMaxPool(norm: normReLU(4, seed: 63), pool: MaxPool2d(kernelSize: 2))
        return [conv, norm, Flatten(), fc]
      }
      let fused = layers()
      let alone = layers()
      let net = Sequential(fused)
      let x = randomTensor([5, 3, 8, 10], seed: 64)
      let y = net.forward(x, training: true)
      XCTAssertEqual(y.array, alone.reduce(x) { $1.forward($0, training: true) }.array, "\(mode)")
      let dy = randomTensor(y.shape, seed: 65)
      _ = net.backward(dy)
      _ = alone.reversed().reduce(dy) { $1.backward($0) }
      XCTAssertEqual(
        (fused[1] as! BatchNormReLUMaxPool).usedTakenSums, mode == .alwaysSparse, "\(mode)")
      for (a, b) in zip(fused.flatMap(\.parameters), alone.flatMap(\.parameters)) {
        XCTAssertEqual(a.grad.array, b.grad.array, "\(a.name) \(mode)")
      }
    }
  }

  /// A batch norm (with and without ReLU) before a convolution in a Sequential: the batch norm
  /// leaves its output to the convolution (`DeferredActivation`), which maps the input as it
  /// reads it, and outputs, running statistics and every gradient are bit for bit the two
  /// layers' run in turn — sparse by image, sparse on one thread (the input mapped in full
  /// first), dense; evaluation runs the layers unfused.
  func testConvolutionAppliesTheDeferredBatchNorm() {
    defer { SparseDispatch.mode = .automatic }
    for (threads, mode, relu) in [
      (2, SparseDispatch.Mode.alwaysSparse, true), (2, .alwaysSparse, false),
      (1, .alwaysSparse, true), (2, .alwaysDense, true),
    ] {
      Threads.set(threads)
      SparseDispatch.mode = mode
      func pair() -> (BatchNorm2d, Conv2d, TestMask) {
        let bn = BatchNorm2d(name: "bn", channels: 4, relu: relu)
        let g = randomTensor([4], seed: 17)
        for i in 0..<4 {
          bn.gamma.value[i] = 1.5 * g[i]  // both signs
          bn.beta.value[i] = 0.3 * Float(i) - 0.4
        }
        let (conv, mask) = maskedConv(4, 6, bias: true, density: 0.3, seed: 18)
        return (bn, conv, mask)
      }
      let (bn, conv, mask) = pair()
      let (bn2, conv2, mask2) = pair()
      _ = (mask, mask2)
      let net = Sequential([bn, conv])
      let what = "threads \(threads) \(mode) relu \(relu)"
      for step in 0..<2 {
        let x = randomTensor([3, 4, 7, 9], seed: 20 + UInt64(step))
        let y = net.forward(x, training: true)
        let y2 = conv2.forward(bn2.forward(x, training: true), training: true)
        XCTAssertEqual(y.array, y2.array, what)
        XCTAssertEqual(bn.runningMean.array, bn2.runningMean.array, what)
        XCTAssertEqual(bn.runningVar.array, bn2.runningVar.array, what)
        let dy = randomTensor(y.shape, seed: 22)
        XCTAssertEqual(net.backward(dy).array, bn2.backward(conv2.backward(dy)).array, what)
        XCTAssertEqual(conv.weight.grad.array, conv2.weight.grad.array, what)
        XCTAssertEqual(conv.bias!.grad.array, conv2.bias!.grad.array, what)
        XCTAssertEqual(bn.gamma.grad.array, bn2.gamma.grad.array, what)
        XCTAssertEqual(bn.beta.grad.array, bn2.beta.grad.array, what)
        XCTAssertEqual(conv.execution.forwardSparse, mode == .alwaysSparse, what)
      }
      let x = randomTensor([2, 4, 7, 9], seed: 23)
      XCTAssertEqual(
        net.forward(x, training: false).array,
        conv2.forward(bn2.forward(x, training: false), training: false).array, what)
    }
    Threads.set(2)
  }

  /// A residual block whose body ends in a batch norm adds that batch norm's output without it
  /// being stored (`ck_residual_relu_forward_mapped`), and with the identity shortcut its
  /// body's first convolution adds the shortcut's gradient to its input gradient: outputs,
  /// running statistics and gradients bit for bit those of the separate passes, identity and
  /// option-A shortcuts, sparse and dense.
  func testResidualBlockAddsTheDeferredBatchNorm() {
    defer { SparseDispatch.mode = .automatic }
    for (inChannels, stride, mode) in [
      (4, 1, SparseDispatch.Mode.alwaysSparse), (4, 1, .alwaysDense), (2, 2, .alwaysSparse),
    ] {
      SparseDispatch.mode = mode
      func block() -> ResidualBlock {
        var rng = SeededGenerator(seed: 24)
        return ResidualBlock(
          body: Sequential([
            Conv2d(
              name: "a", inChannels: inChannels, outChannels: 4, kernelSize: 3, stride: stride,
              padding: 1, bias: false, rng: &rng),
            normReLU(4, seed: 25),
            Conv2d(
              name: "b", inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, bias: false,
              rng: &rng),
            BatchNorm2d(name: "bn2", channels: 4),
          ]))
      }
      let (fused, reference) = (block(), block())
      (reference.body.layers[3] as! BatchNorm2d).gamma.value.fill(0.7)
      (fused.body.layers[3] as! BatchNorm2d).gamma.value.fill(0.7)
      let x = randomTensor([3, inChannels, 8, 6], seed: 26)
      let y = fused.forward(x, training: true)
      let body = reference.body.forward(x, training: true)
      let expected = Tensor(shape: body.shape)
      var s = ck_residual_shape(
        batch: 3, in_channels: Int32(inChannels), in_height: 8, in_width: 6, out_channels: 4,
        out_height: Int32(body.shape[2]), out_width: Int32(body.shape[3]))
      ck_residual_relu_forward(&s, body.data, x.data, expected.data)
      XCTAssertEqual(y.array, expected.array, "stride \(stride)")
      // Backward: the body's first convolution adds the shortcut's gradient (identity).
      let dy = randomTensor(y.shape, seed: 27)
      let dx = fused.backward(dy)
      let gs = Tensor(shape: y.shape)
      ck_residual_relu_backward(&s, expected.data, dy.data, gs.data, nil)
      let gb = reference.body.backward(gs)
      let dxExpected = Tensor(shape: x.shape)
      ck_residual_input_gradient(&s, gb.data, gs.data, dxExpected.data)
      XCTAssertEqual(dx.array, dxExpected.array, "stride \(stride)")
      // The body's last batch norm took its sums in the residual backward.
      XCTAssertTrue((fused.body.layers[3] as! BatchNorm2d).usedTakenSums, "stride \(stride)")
      for (a, b) in zip(fused.parameters, reference.parameters) {
        XCTAssertEqual(a.grad.array, b.grad.array, "\(a.name)")
      }
      for (a, b) in zip(fused.body.layers, reference.body.layers) {
        guard let a = a as? BatchNorm2d, let b = b as? BatchNorm2d else { continue }
        XCTAssertEqual(a.runningMean.array, b.runningMean.array)
        XCTAssertEqual(a.runningVar.array, b.runningVar.array)
      }
    }
  }

  /// A first convolution (no input gradient) followed by a batch norm (with and without ReLU):
  /// the batch norm's input gradient is produced plane by plane by the convolution's weight
  /// gradient, only for output channels that keep a weight, and every gradient is bit for bit
  /// the two backwards' in turn — sparse by image, sparse on one thread, dense. A convolution
  /// that computes its own input gradient gets the stored gradient (no deferral).
  func testFirstConvolutionProducesTheDeferredBatchNormGradient() {
    defer { SparseDispatch.mode = .automatic }
    for (threads, mode, relu) in [
      (2, SparseDispatch.Mode.alwaysSparse, true), (2, .alwaysSparse, false),
      (1, .alwaysSparse, true), (2, .alwaysDense, true),
    ] {
      Threads.set(threads)
      SparseDispatch.mode = mode
      func pair() -> (Conv2d, BatchNorm2d, TestMask) {
        let (conv, mask) = maskedConv(1, 6, density: 0.15, seed: 28)
        conv.needsInputGradient = false
        let bn = BatchNorm2d(name: "bn", channels: 6, relu: relu)
        for i in 0..<6 { bn.beta.value[i] = 0.2 * Float(i) - 0.5 }
        return (conv, bn, mask)
      }
      let (conv, bn, mask) = pair()
      let (conv2, bn2, mask2) = pair()
      _ = (mask, mask2)
      XCTAssertTrue(mask.mask.count == 54 && mask.density < 0.5)
      let net = Sequential([conv, bn])
      let x = randomTensor([4, 1, 9, 7], seed: 30)
      let y = net.forward(x, training: true)
      XCTAssertEqual(y.array, bn2.forward(conv2.forward(x, training: true), training: true).array)
      let dy = randomTensor(y.shape, seed: 31)
      _ = net.backward(dy)
      _ = conv2.backward(bn2.backward(dy))
      let what = "threads \(threads) \(mode) relu \(relu)"
      XCTAssertEqual(conv.weight.grad.array, conv2.weight.grad.array, what)
      XCTAssertEqual(bn.gamma.grad.array, bn2.gamma.grad.array, what)
      XCTAssertEqual(bn.beta.grad.array, bn2.beta.grad.array, what)
      XCTAssertNotNil(bn2.backwardDeferringInputGradient(dy, to: conv2), what)
      conv2.needsInputGradient = true
      XCTAssertNil(bn2.backwardDeferringInputGradient(dy, to: conv2), what)
    }
    Threads.set(2)
  }

  func testBatchNormReLUMaxPoolFiniteDifferences() {
    checkGradients(
      BatchNormReLUMaxPool(norm: normReLU(3, seed: 30), pool: MaxPool2d(kernelSize: 2)),
      inputShape: [3, 3, 4, 6], eps: 1e-3)
    checkGradients(
      BatchNormReLUMaxPool(norm: normReLU(2, seed: 31), pool: MaxPool2d(kernelSize: 2)),
      inputShape: [2, 2, 5, 3], eps: 1e-3)
  }

  /// Parameters and buffers keep the batch norm's names (checkpoints, partitions).
  func testBatchNormReLUMaxPoolKeepsNames() {
    let layer = BatchNormReLUMaxPool(
      norm: BatchNorm2d(name: "bn2", channels: 4, relu: true), pool: MaxPool2d(kernelSize: 2))
    XCTAssertEqual(layer.parameters.map(\.name), ["bn2.weight", "bn2.bias"])
    XCTAssertEqual(layer.buffers.map(\.name), ["bn2.running_mean", "bn2.running_var"])
    let cnn = ReferenceModel.cnn.build(seed: 0)
    XCTAssertTrue(cnn.buffers.map(\.name).contains("bn3.running_var"))
  }

  private func assertClose(
    _ a: Tensor, _ b: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
    var worst = 0.0
    for i in 0..<a.count {
      let d = abs(Double(a[i]) - Double(b[i])) / max(1e-3, abs(Double(b[i])))
      worst = max(worst, d)
    }
    XCTAssertLessThan(worst, 1e-3, "\(what): largest relative difference", file: file, line: line)
  }
}
