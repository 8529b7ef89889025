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

  /// Same outputs and running statistics as BatchNorm2d+ReLU then MaxPool2d, the same
  /// gradients to rounding; even and odd planes, with ties (constant regions) and without.
  func testBatchNormReLUMaxPoolMatchesTheTwoLayers() {
    for shape in [[4, 3, 6, 8], [3, 5, 7, 5], [2, 64, 28, 28], [1, 2, 2, 2]] {
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
