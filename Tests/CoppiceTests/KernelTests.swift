import CCoppiceKernels
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// The optimised C kernels against plain reference loops, on odd shapes and thread counts.
final class KernelTests: XCTestCase {
  override func tearDown() { Threads.set(2) }

  func referenceGemm(
    ta: Bool, tb: Bool, m: Int, n: Int, k: Int, a: Tensor, b: Tensor, beta: Float, c: Tensor
  ) {
    for i in 0..<m {
      for j in 0..<n {
        var s: Double = 0
        for p in 0..<k {
          let av = ta ? a[p * m + i] : a[i * k + p]
          let bv = tb ? b[j * k + p] : b[p * n + j]
          s += Double(av) * Double(bv)
        }
        c[i * n + j] = Float(s) + beta * c[i * n + j]
      }
    }
  }

  /// OpenBLAS runs a core this CPU supports at its best: an OpenBLAS older than the CPU model
  /// falls back to "Prescott" (SSE3), and the kernels' library corrects that when it loads
  /// (dense/blas_core.c). A forced OPENBLAS_CORETYPE is the user's choice and not checked.
  func testOpenBLASDoesNotRunAGenericCoreOnAnAVXCPU() throws {
    let core = KernelISA.blasCore
    XCTAssertFalse(core.isEmpty)
    if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil { return }
    let running = String(cString: ck_blas_core_name())
    let generic = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem"]
    if KernelISA.dense == "x86-64-v4" || KernelISA.dense == "x86-64-v3" {
      XCTAssertFalse(generic.contains(running), "OpenBLAS core \(core) on a \(KernelISA.dense) CPU")
    }
    if KernelISA.dense == "x86-64-v4", running == "Haswell" || running == "Sandybridge" {
      XCTFail("OpenBLAS core \(core) on an AVX-512 CPU")
    }
  }

  func testSgemmAllTransposesAndThreads() {
    for threads in [1, 2] {
      Threads.set(threads)
      for (m, n, k) in [(1, 1, 1), (3, 5, 7), (67, 33, 129), (130, 17, 300), (17, 140, 65)] {
        for ta in [false, true] {
          for tb in [false, true] {
            let a = randomTensor([m * k], seed: 1)
            let b = randomTensor([k * n], seed: 2)
            let c = randomTensor([m * n], seed: 3)
            let expected = c.clone()
            referenceGemm(ta: ta, tb: tb, m: m, n: n, k: k, a: a, b: b, beta: 0.5, c: expected)
            ck_sgemm(
              ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a.data,
              Int32(ta ? m : k), b.data, Int32(tb ? k : n), 0.5, c.data, Int32(n))
            for i in 0..<c.count {
              XCTAssertEqual(
                c[i], expected[i], accuracy: 1e-4 * Float(k), "\(m)x\(n)x\(k) \(ta) \(tb)")
            }
          }
        }
      }
    }
  }

  /// Direct convolution, the reference for im2col + GEMM.
  func referenceConv(
    x: Tensor, w: Tensor, bias: Tensor?, n: Int, cin: Int, h: Int, wd: Int, cout: Int, k: Int,
    stride: Int, pad: Int
  ) -> Tensor {
    let oh = (h + 2 * pad - k) / stride + 1
    let ow = (wd + 2 * pad - k) / stride + 1
    let y = Tensor(shape: [n, cout, oh, ow])
    for b in 0..<n {
      for o in 0..<cout {
        for oy in 0..<oh {
          for ox in 0..<ow {
            var s = Double(bias?[o] ?? 0)
            for c in 0..<cin {
              for i in 0..<k {
                for j in 0..<k {
                  let iy = oy * stride - pad + i
                  let ix = ox * stride - pad + j
                  if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                  s +=
                    Double(x[((b * cin + c) * h + iy) * wd + ix])
                    * Double(w[((o * cin + c) * k + i) * k + j])
                }
              }
            }
            y[((b * cout + o) * oh + oy) * ow + ox] = Float(s)
          }
        }
      }
    }
    return y
  }

  func testConvForwardMatchesDirectConvolution() {
    let cases = [
      (1, 1, 5, 5, 2, 3, 1, 1), (3, 2, 7, 6, 3, 3, 2, 1), (2, 3, 8, 9, 4, 3, 2, 0),
      (2, 4, 5, 5, 3, 1, 1, 0), (1, 2, 9, 9, 2, 5, 3, 2), (5, 3, 4, 4, 1, 3, 1, 2),
    ]
    for threads in [1, 2] {
      Threads.set(threads)
      for (n, cin, h, wd, cout, k, stride, pad) in cases {
        var rng = SeededGenerator(seed: 1)
        let conv = Conv2d(
          name: "c", inChannels: cin, outChannels: cout, kernelSize: k, stride: stride,
          padding: pad, rng: &rng)
        for i in 0..<cout { conv.bias!.value[i] = Float(i) * 0.1 }
        let x = randomTensor([n, cin, h, wd], seed: 2)
        let y = conv.forward(x, training: true)
        let expected = referenceConv(
          x: x, w: conv.weight.value, bias: conv.bias!.value, n: n, cin: cin, h: h, wd: wd,
          cout: cout, k: k, stride: stride, pad: pad)
        XCTAssertEqual(y.shape, expected.shape)
        for i in 0..<y.count { XCTAssertEqual(y[i], expected[i], accuracy: 1e-4) }
      }
    }
  }

  func testConvBackwardIsTheAdjointOfForward() {
    // <conv(x), g> = <x, dX(g)> and = <w, dW(g)> for a bias-free convolution.
    for threads in [1, 2] {
      Threads.set(threads)
      var rng = SeededGenerator(seed: 4)
      let conv = Conv2d(
        name: "c", inChannels: 3, outChannels: 5, kernelSize: 3, stride: 2, padding: 1,
        bias: false, rng: &rng)
      let x = randomTensor([7, 3, 9, 8], seed: 5)
      let y = conv.forward(x, training: true)
      let g = randomTensor(y.shape, seed: 6)
      let dx = conv.backward(g)
      var lhs = 0.0
      var rx = 0.0
      var rw = 0.0
      for i in 0..<y.count { lhs += Double(y[i]) * Double(g[i]) }
      for i in 0..<x.count { rx += Double(x[i]) * Double(dx[i]) }
      for i in 0..<conv.weight.count {
        rw += Double(conv.weight.value[i]) * Double(conv.weight.grad[i])
      }
      XCTAssertEqual(lhs, rx, accuracy: 1e-3 * max(1, abs(lhs)))
      XCTAssertEqual(lhs, rw, accuracy: 1e-3 * max(1, abs(lhs)))
    }
  }

  func testBatchNormStatisticsAndEvaluation() {
    let bn = BatchNorm2d(name: "bn", channels: 2, momentum: 0.5)
    // Channel values far from zero check the shifted one-pass variance.
    let x = Tensor(shape: [2, 2, 1, 2], values: [1000, 1002, 5, 7, 1004, 1006, 9, 11])
    let y = bn.forward(x, training: true)
    var mean: Float = 0
    for i in [0, 1, 4, 5] { mean += y[i] }
    XCTAssertEqual(mean, 0, accuracy: 1e-3)
    XCTAssertEqual(bn.runningMean[0], 0.5 * 1003, accuracy: 1e-2)
    // unbiased variance of [1000, 1002, 1004, 1006] = 20/3
    XCTAssertEqual(bn.runningVar[0], 0.5 + 0.5 * 20 / 3, accuracy: 1e-3)
    let e = bn.forward(x, training: false)
    XCTAssertEqual(
      e[0], (1000 - bn.runningMean[0]) / (bn.runningVar[0] + 1e-5).squareRoot(), accuracy: 1e-2)
  }

  /// The fused BN+ReLU backward that recomputes the ReLU's mask from x gives exactly what the
  /// backward reading the forward's output gives (including outputs that are exactly 0 and
  /// values next to the threshold), for one and two threads.
  func testBatchNormReLUBackwardRecomputesTheForwardMask() {
    for threads in [1, 2] {
      Threads.set(threads)
      let (n, c, hw) = (5, 7, 37)
      let bn = BatchNorm2d(name: "bn", channels: c, relu: true)
      let g = randomTensor([c], seed: 31)
      let b = randomTensor([c], seed: 32)
      for i in 0..<c {
        bn.gamma.value[i] = g[i] * 2  // both signs
        bn.beta.value[i] = b[i]
      }
      let x = randomTensor([n, c, hw], seed: 33)
      for i in stride(from: 0, to: x.count, by: 11) { x[i] = 0 }
      let y = bn.forward(x, training: true).clone()
      let dy = randomTensor([n, c, hw], seed: 34)
      func run(_ recompute: Bool) -> [Float] {
        let dx = Tensor(shape: [n, c, hw])
        let dg = Tensor(shape: [c])
        let db = Tensor(shape: [c])
        if recompute {
          ck_batchnorm_relu_backward(
            Int32(n), Int32(c), Int32(hw), x.data, bn.gamma.value.data, bn.beta.value.data,
            bn.saveMean.data, bn.saveInvStd.data, dy.data, dx.data, dg.data, db.data)
        } else {
          ck_batchnorm_backward(
            Int32(n), Int32(c), Int32(hw), x.data, bn.gamma.value.data, bn.saveMean.data,
            bn.saveInvStd.data, dy.data, y.data, dx.data, dg.data, db.data)
        }
        return dx.array + dg.array + db.array
      }
      XCTAssertEqual(run(true), run(false))
      XCTAssertGreaterThan(y.array.filter { $0 == 0 }.count, n * c * hw / 4)
    }
  }

  /// The fused BN+ReLU+pool backward with β (sums from the pooled output, dx image by image)
  /// against the one without (channel by channel, sums from x): the same gradients to rounding,
  /// on 1 and 2 threads, odd planes, γ of both signs; a channel whose γ is tiny against its β
  /// sends the call down the channel path (then the two agree exactly).
  func testBatchNormReLUMaxPoolBackwardByImageMatchesByChannel() {
    for threads in [1, 2] {
      Threads.set(threads)
      for (shape, tinyGamma) in [([5, 7, 9, 6], false), ([3, 4, 8, 8], true)] {
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let layer = BatchNormReLUMaxPool(
          norm: BatchNorm2d(name: "bn", channels: c, relu: true), pool: MaxPool2d(kernelSize: 2))
        let g = randomTensor([c], seed: 41)
        let b = randomTensor([c], seed: 42)
        for i in 0..<c {
          layer.norm.gamma.value[i] = 2 * g[i]  // both signs
          layer.norm.beta.value[i] = b[i]
        }
        if tinyGamma { layer.norm.gamma.value[1] = 1e-4 * (abs(b[1]) + 0.1) }
        let x = randomTensor(shape, seed: 43)
        let y = layer.forward(x, training: true)
        let dy = randomTensor(y.shape, seed: 44)
        func run(beta: Bool) -> (dx: [Float], dg: [Float], db: [Float]) {
          let dx = Tensor(shape: shape)
          let (dg, db) = (Tensor(shape: [c]), Tensor(shape: [c]))
          layer.winners.withUnsafeBufferPointer { win in
            ck_batchnorm_relu_maxpool2_backward(
              Int32(n), Int32(c), Int32(h), Int32(w), x.data, layer.norm.gamma.value.data,
              beta ? layer.norm.beta.value.data : nil, layer.norm.saveMean.data,
              layer.norm.saveInvStd.data, y.data, win.baseAddress, dy.data, dx.data, dg.data,
              db.data)
          }
          return (dx.array, dg.array, db.array)
        }
        let (byImage, byChannel) = (run(beta: true), run(beta: false))
        if tinyGamma {
          XCTAssertEqual(byImage.dx, byChannel.dx)
          XCTAssertEqual(byImage.dg, byChannel.dg)
          continue
        }
        func close(_ a: [Float], _ b: [Float], _ what: String) {
          let scale = b.map { abs($0) }.max() ?? 1
          for i in a.indices {
            XCTAssertEqual(a[i], b[i], accuracy: 1e-5 * max(scale, 1e-3), "\(what)[\(i)]")
          }
        }
        close(byImage.dx, byChannel.dx, "dx")
        close(byImage.dg, byChannel.dg, "dγ")
        close(byImage.db, byChannel.db, "dβ")
        XCTAssertNotEqual(byImage.dg, [Float](repeating: 0, count: c))
        // Different arithmetic, so some last bits differ: both paths ran.
        XCTAssertNotEqual(byImage.dx, byChannel.dx)
      }
    }
  }

  func testMaxPoolFastPathAgreesWithGeneralPath() {
    let x = randomTensor([3, 2, 8, 6], seed: 8)
    let fast = MaxPool2d(kernelSize: 2).forward(x, training: true).clone()
    // The general path with the same window through padding 0 and explicit k/s.
    var general = [Float](repeating: 0, count: fast.count)
    var arg = [Int32](repeating: 0, count: fast.count)
    general.withUnsafeMutableBufferPointer { g in
      arg.withUnsafeMutableBufferPointer { a in
        ck_maxpool_forward(6, 8, 6, 2, 2, 0, 4, 3, x.data, g.baseAddress, a.baseAddress)
      }
    }
    // Reference by hand.
    for p in 0..<6 {
      for oy in 0..<4 {
        for ox in 0..<3 {
          var m = -Float.infinity
          for i in 0..<2 {
            for j in 0..<2 { m = max(m, x[p * 48 + (2 * oy + i) * 6 + 2 * ox + j]) }
          }
          XCTAssertEqual(fast[p * 12 + oy * 3 + ox], m)
          XCTAssertEqual(general[p * 12 + oy * 3 + ox], m)
        }
      }
    }
  }
}
