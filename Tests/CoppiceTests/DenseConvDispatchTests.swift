import CCoppiceKernels
import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity

/// A layer without a mask runs the direct sparse kernels with a full mask where they beat the
/// dense convolution (`ck_sparse_conv2d_direct_preferred`): same results as im2col + sgemm.
final class DenseConvDispatchTests: XCTestCase {
  override func setUp() { Threads.set(2) }
  override func tearDown() { SparseDispatch.mode = .automatic }

  private func run(_ layer: Conv2d, _ x: Tensor, _ dy: Tensor) -> (Tensor, Tensor, Tensor) {
    let y = layer.forward(x, training: true).clone()
    let dx = layer.backward(dy).clone()
    return (y, dx, layer.weight.grad.clone())
  }

  func testDirectKernelsMatchDenseWithoutAMask() {
    // K = 9 (below 16 weight columns) runs direct only with the compiled products (AVX-512,
    // CK_SPARSE_JIT not 0).
    let jit = ProcessInfo.processInfo.environment["CK_SPARSE_JIT"]
    let compiled = ck_sparse_isa() == 2 && jit != "0" && jit != "off"
    // (channels in, out, size, stride, whether the direct kernels should run)
    for (cin, cout, size, stride, direct) in [
      (16, 16, 28, 1, true), (7, 5, 9, 1, true), (32, 64, 14, 1, true), (16, 32, 14, 2, true),
      (8, 8, 12, 3, false), (1, 8, 10, 1, compiled),
    ] {
      var rng = SeededGenerator(seed: 40)
      let layer = Conv2d(
        name: "c", inChannels: cin, outChannels: cout, kernelSize: 3, stride: stride,
        padding: 1, rng: &rng)
      randomize(layer.bias!.value, seed: 41)
      let x = randomTensor([3, cin, size, size], seed: 42)
      let out = layer.outputShape(for: x.shape)
      let dy = randomTensor(out, seed: 43)
      SparseDispatch.mode = .automatic
      let (y, dx, dw) = run(layer, x, dy)
      XCTAssertEqual(layer.execution.forwardSparse, direct, "\(cin)→\(cout) stride \(stride)")
      SparseDispatch.mode = .alwaysDense
      let (yd, dxd, dwd) = run(layer, x, dy)
      XCTAssertFalse(layer.execution.forwardSparse)
      for (a, b, what) in [(y, yd, "y"), (dx, dxd, "dx"), (dw, dwd, "dw")] {
        var worst = 0.0
        for i in 0..<a.count {
          worst = max(worst, abs(Double(a[i]) - Double(b[i])) / max(1, abs(Double(b[i]))))
        }
        XCTAssertLessThan(worst, 1e-4, "\(cin)→\(cout) stride \(stride): \(what)")
      }
    }
  }

  private func randomize(_ t: Tensor, seed: UInt64) {
    let r = randomTensor(t.shape, seed: seed)
    for i in 0..<t.count { t[i] = r[i] }
  }
}
