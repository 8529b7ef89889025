import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// A fixed random mask for tests.
final class TestMask: MaskSource {
  var mask: [UInt8]
  var maskVersion = 0
  var needsDenseGradient = false
  var density: Double { Double(mask.reduce(0) { $0 + Int($1) }) / Double(max(1, mask.count)) }

  init(count: Int, density: Double, seed: UInt64) {
    var rng = SeededGenerator(seed: seed)
    mask = (0..<count).map { _ in Double(rng.nextUniform()) < density ? 1 : 0 }
  }
}

/// Sparse execution of Linear and Conv2d against their dense execution on masked weights.
final class SparseLayerTests: XCTestCase {
  override func tearDown() {
    SparseDispatch.mode = .automatic
    Threads.set(2)
  }

  /// Runs forward+backward of `layer` in both modes and compares outputs and gradients.
  func compareModes(
    _ layer: Layer, weight: Parameter, source: TestMask, inputShape: [Int], sparse: inout Bool,
    line: UInt = #line
  ) {
    for i in 0..<weight.count where source.mask[i] == 0 { weight.value[i] = 0 }
    let x = randomTensor(inputShape, seed: 3)
    func run(_ mode: SparseDispatch.Mode) -> (y: [Float], dx: [Float], grads: [[Float]]) {
      SparseDispatch.mode = mode
      let y = layer.forward(x, training: true).array
      let dy = randomTensor(layer.outputShape(for: inputShape), seed: 4)
      let dx = layer.backward(dy).array
      var grads = layer.parameters.map(\.grad.array)
      // Dense backward gives gradients at masked positions too; the sparsifier masks them.
      grads[0] = zip(grads[0], source.mask).map { $1 == 0 ? 0 : $0 }
      return (y, dx, grads)
    }
    let dense = run(.alwaysDense)
    let sparseRun = run(.alwaysSparse)
    for (a, b) in zip(dense.y, sparseRun.y) { XCTAssertEqual(a, b, accuracy: 1e-3, line: line) }
    if layer.needsInputGradient {
      for (a, b) in zip(dense.dx, sparseRun.dx) { XCTAssertEqual(a, b, accuracy: 1e-3, line: line) }
    }
    for (ga, gb) in zip(dense.grads, sparseRun.grads) {
      for (a, b) in zip(ga, gb) { XCTAssertEqual(a, b, accuracy: 2e-3, line: line) }
    }
    sparse = true
  }

  func testSparseLinearMatchesDense() {
    for threads in [1, 2] {
      Threads.set(threads)
      for density in [0.0, 0.1, 0.5, 1.0] {
        var rng = SeededGenerator(seed: 1)
        let layer = Linear(name: "fc", inFeatures: 37, outFeatures: 19, rng: &rng)
        for i in 0..<19 { layer.bias!.value[i] = Float(i) * 0.01 }
        let source = TestMask(count: layer.weight.count, density: density, seed: 2)
        layer.maskSource = source
        var ran = false
        compareModes(
          layer, weight: layer.weight, source: source, inputShape: [13, 37], sparse: &ran)
        XCTAssertTrue(layer.execution.forwardSparse && layer.execution.backwardSparse)
      }
    }
  }

  func testSparseConvMatchesDense() {
    for threads in [1, 2] {
      Threads.set(threads)
      for (density, stride, pad) in [(0.0, 1, 1), (0.2, 1, 1), (0.5, 2, 0), (1.0, 2, 1)] {
        var rng = SeededGenerator(seed: 5)
        let layer = Conv2d(
          name: "c", inChannels: 3, outChannels: 6, kernelSize: 3, stride: stride, padding: pad,
          rng: &rng)
        let source = TestMask(count: layer.weight.count, density: density, seed: 6)
        layer.maskSource = source
        var ran = false
        compareModes(
          layer, weight: layer.weight, source: source, inputShape: [3, 3, 9, 7], sparse: &ran)
        XCTAssertTrue(layer.execution.forwardSparse && layer.execution.backwardSparse)
      }
    }
  }

  func testMaskChangeRebuildsTheFormat() {
    var rng = SeededGenerator(seed: 1)
    let layer = Linear(name: "fc", inFeatures: 8, outFeatures: 4, bias: false, rng: &rng)
    let source = TestMask(count: 32, density: 1, seed: 0)
    layer.maskSource = source
    SparseDispatch.mode = .alwaysSparse
    let x = randomTensor([2, 8], seed: 1)
    let full = layer.forward(x, training: false).array
    source.mask = [UInt8](repeating: 0, count: 32)
    source.maskVersion += 1
    let empty = layer.forward(x, training: false).array
    XCTAssertNotEqual(full, empty)
    XCTAssertEqual(empty, [Float](repeating: 0, count: 8))
  }

  func testDenseGradientRequestUsesTheDensePath() {
    var rng = SeededGenerator(seed: 1)
    let layer = Linear(name: "fc", inFeatures: 8, outFeatures: 4, rng: &rng)
    let source = TestMask(count: 32, density: 0.5, seed: 0)
    source.needsDenseGradient = true
    layer.maskSource = source
    SparseDispatch.mode = .alwaysSparse
    _ = layer.forward(randomTensor([3, 8], seed: 1), training: true)
    _ = layer.backward(randomTensor([3, 4], seed: 2))
    XCTAssertFalse(layer.execution.backwardSparse)
    // Gradients exist at masked positions too.
    XCTAssertTrue((0..<32).contains { source.mask[$0] == 0 && layer.weight.grad[$0] != 0 })
  }
}
