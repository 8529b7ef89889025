import ArgumentParser
import Coppice

// The measurement types of `coppice bench kernels` (BenchKernels.swift runs them,
// BenchKernelsOutput.swift prints them) and the buffers the timed kernels work on.

/// A product shape M×K×N: the sparse weight W is M×K, the dense operand X is K×N.
struct GEMMShape: ExpressibleByArgument, Equatable, CustomStringConvertible {
  var m: Int
  var k: Int
  var n: Int

  init(_ m: Int, _ k: Int, _ n: Int) {
    self.m = m
    self.k = k
    self.n = n
  }

  init?(argument: String) {
    let parts = argument.lowercased().replacingOccurrences(of: "×", with: "x").split(
      separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 3 else { return nil }
    let values = parts.compactMap { Int($0) }
    guard values.count == 3, values.allSatisfy({ $0 > 0 && $0 < Int(Int32.max) }) else {
      return nil
    }
    // The sparse format needs M·K < 2^31.
    let (area, overflow) = values[0].multipliedReportingOverflow(by: values[1])
    guard !overflow, area < Int(Int32.max) else { return nil }
    self.init(values[0], values[1], values[2])
  }

  var description: String { "\(m)x\(k)x\(n)" }
  var dims: [Int] { [m, k, n] }
  /// Dense flops of one product (2·M·K·N).
  var flops: Double { 2 * Double(m) * Double(k) * Double(n) }
}

/// Times of one kernel over the timed runs, in milliseconds.
struct KernelTiming {
  var median: Double
  var min: Double
  var max: Double

  /// max/min over the runs: 1 on a quiet machine, large when other work interfered.
  var spread: Double { max / min }

  /// Two kernels run one after the other (the backward pass).
  static func + (a: KernelTiming, b: KernelTiming) -> KernelTiming {
    KernelTiming(median: a.median + b.median, min: a.min + b.min, max: a.max + b.max)
  }
}

/// One timed comparison of a dense and a sparse kernel on the same product.
struct KernelMeasurement {
  /// `forward`, `input_grad`, `weight_grad` or `backward` (both gradients).
  var op: String
  var shape: GEMMShape
  /// The reference-model layer for convolutions measured end to end, nil for plain products.
  var layer: String?
  var sparsity: Double
  var nonzeros: Int
  var dense: KernelTiming
  var sparse: KernelTiming
  /// What `ck_sparse_prefer` (the engine's dispatch) picks for this product.
  var dispatchSparse: Bool
  /// Dense-equivalent flops of the measured work.
  var flops: Double

  var denseMs: Double { dense.median }
  var sparseMs: Double { sparse.median }
  var speedup: Double { denseMs / sparseMs }
  var gflops: Double { flops / (sparseMs * 1e-3) / 1e9 }
  var idealSpeedup: Double { 1 / (1 - sparsity) }
  var fractionOfIdeal: Double { speedup * (1 - sparsity) }
}

/// One line of the table: every op measured for one shape at one sparsity.
struct KernelRow {
  var label: String
  var sparsity: Double
  var forward: KernelMeasurement
  var inputGrad: KernelMeasurement?
  var weightGrad: KernelMeasurement?
  var backward: KernelMeasurement
  var all: [KernelMeasurement] {
    [forward] + [inputGrad, weightGrad].compactMap { $0 } + [backward]
  }
  /// The largest run-to-run spread (max/min) of the row's timings.
  var spread: Double { all.map { Swift.max($0.dense.spread, $0.sparse.spread) }.max() ?? 1 }
}

/// A convolution of the reference `cnn` (3×3, stride 1, padding 1).
struct ConvLayerSpec {
  var name: String
  var inChannels: Int
  var outChannels: Int
  var size: Int
}

/// A float buffer allocated once and reused across sparsities.
struct Buffer {
  let p: UnsafeMutablePointer<Float>
  let count: Int

  init(_ count: Int) {
    self.count = max(1, count)
    p = .allocate(capacity: self.count)
    p.initialize(repeating: 0, count: self.count)
  }

  func free() { p.deallocate() }

  func fillUniform(_ rng: inout SeededGenerator) {
    for i in 0..<count { p[i] = rng.nextUniform() - 0.5 }
  }
}

/// Random byte masks with an exact number of zeros (partial Fisher–Yates over the positions).
struct MaskBuilder {
  let count: Int
  let bytes: UnsafeMutablePointer<UInt8>
  let order: UnsafeMutablePointer<Int32>

  init(count: Int) {
    self.count = count
    bytes = .allocate(capacity: max(1, count))
    order = .allocate(capacity: max(1, count))
  }

  func free() {
    bytes.deallocate()
    order.deallocate()
  }

  /// Sets exactly `zeros` random entries to 0 and the rest to 1; returns the kept count.
  mutating func randomize(zeros: Int, rng: inout SeededGenerator) -> Int {
    let zeros = min(max(0, zeros), count)
    // Choose whichever of the two sets is smaller.
    let pickZeros = zeros <= count - zeros
    let picks = pickZeros ? zeros : count - zeros
    bytes.update(repeating: pickZeros ? 1 : 0, count: count)
    for i in 0..<count { order[i] = Int32(i) }
    for i in 0..<picks {
      let j = Int.random(in: i..<count, using: &rng)
      (order[i], order[j]) = (order[j], order[i])
      bytes[Int(order[i])] = pickZeros ? 0 : 1
    }
    return count - zeros
  }

  func withBytes<R>(_ body: (UnsafePointer<UInt8>) -> R) -> R { body(bytes) }
}
