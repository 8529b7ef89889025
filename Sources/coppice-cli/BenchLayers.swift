import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

/// `coppice bench layers`: a training step's three products of a host's linear or convolution
/// layer — what coppice_layer_* (and so coppice.torch) run — at a sparsity, against the same
/// layer forced dense (OpenBLAS), measured in interleaved pairs.
struct BenchLayers: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "layers",
    abstract:
      "Host layer operations (forward + input and weight gradients, layouts included) sparse vs dense, paired."
  )

  @Option(help: "Sparsities to measure, comma-separated.") var sparsity = "0.8,0.9"
  @Option(help: "Threads.") var threads: Int?
  @Option(help: "Interleaved pairs per measurement (the median ratio is reported).") var pairs = 7
  @Option(help: "Write the results as JSON to this file.") var json: String?

  func validate() throws {
    if let t = threads { try requireRange(t, 1...Threads.maximum, "--threads") }
    try requireRange(pairs, 1...10_000, "--pairs")
  }

  /// A fixed mask with exactly round(n·s) zeros at random positions.
  final class Mask: MaskSource {
    let mask: [UInt8]
    let maskVersion = 0
    let density: Double
    let needsDenseGradient = false
    init(count: Int, sparsity: Double, seed: UInt64) {
      var rng = SeededGenerator(seed: seed)
      mask = RandomMask.mask(
        count: count, zeros: SparseTarget.zeros(count: count, sparsity: sparsity), using: &rng)
      density = Double(mask.reduce(0) { $0 + Int($1) }) / Double(max(1, count))
    }
  }

  /// One layer shape: the reference cnn's convolutions and fc1, the Transformer LM's linears
  /// (batch 32 × context 128 tokens).
  enum Shape {
    case linear(name: String, batch: Int, inFeatures: Int, outFeatures: Int)
    case conv(name: String, batch: Int, inChannels: Int, outChannels: Int, size: Int)

    var name: String {
      switch self {
      case .linear(let name, _, _, _), .conv(let name, _, _, _, _): return name
      }
    }
  }

  static let shapes: [Shape] = [
    .conv(
      name: "cnn conv2 (32→64, 28×28, batch 128)", batch: 128, inChannels: 32, outChannels: 64,
      size: 28),
    .conv(
      name: "cnn conv3 (64→128, 14×14, batch 128)", batch: 128, inChannels: 64, outChannels: 128,
      size: 14),
    .linear(name: "cnn fc1 (6272→256, batch 128)", batch: 128, inFeatures: 6272, outFeatures: 256),
    .linear(
      name: "LM fc1 (256→1024, 4096 tokens)", batch: 4096, inFeatures: 256, outFeatures: 1024),
    .linear(
      name: "LM fc2 (1024→256, 4096 tokens)", batch: 4096, inFeatures: 1024, outFeatures: 256),
    .linear(
      name: "LM q/k/v/out (256→256, 4096 tokens)", batch: 4096, inFeatures: 256, outFeatures: 256),
  ]

  func run() throws {
    Threads.set(threads ?? Threads.availableCores)
    let sparsities = sparsity.split(separator: ",").compactMap { Double($0) }
    guard !sparsities.isEmpty, sparsities.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
      throw ValidationError("--sparsity takes values in [0, 1), comma-separated")
    }
    print(
      "host layer step (forward, input gradient, weight gradient), \(Threads.count) threads, "
        + "median of \(pairs) interleaved pairs; dense = the same layer on OpenBLAS")
    print(
      "layer".padding(toLength: 40, withPad: " ", startingAt: 0)
        + "sparsity  dense ms  sparse ms  speedup  ran sparse (fwd/bwd)")
    var records: [[String: Any]] = []
    for shape in Self.shapes {
      for s in sparsities {
        let r = measure(shape, sparsity: s)
        print(
          shape.name.padding(toLength: 40, withPad: " ", startingAt: 0)
            + String(
              format: "%7.0f%%  %8.2f  %9.2f  %6.2f×  %@/%@", 100 * s, r.dense, r.sparse, r.ratio,
              r.forwardSparse ? "yes" : "no", r.backwardSparse ? "yes" : "no"))
        records.append([
          "layer": shape.name, "sparsity": s, "dense_ms": r.dense, "sparse_ms": r.sparse,
          "speedup": r.ratio, "forward_sparse": r.forwardSparse,
          "backward_sparse": r.backwardSparse,
        ])
      }
    }
    if let json {
      let data = try JSONSerialization.data(
        withJSONObject: ["threads": Threads.count, "pairs": pairs, "layers": records],
        options: [.prettyPrinted, .sortedKeys])
      try data.write(to: URL(fileURLWithPath: json))
      print("wrote \(json)")
    }
  }

  /// Median dense and sparse milliseconds and the median of the per-pair ratios.
  func measure(_ shape: Shape, sparsity: Double) -> (
    dense: Double, sparse: Double, ratio: Double, forwardSparse: Bool, backwardSparse: Bool
  ) {
    var rng = SeededGenerator(seed: 7)
    func filled(_ n: Int) -> Tensor {
      let t = Tensor(shape: [n])
      for i in 0..<n { t[i] = rng.nextUniform() - 0.5 }
      return t
    }
    /// A random mask at `sparsity` and random weights that are zero outside it.
    func maskedWeights(_ count: Int) -> (Mask, Tensor) {
      let mask = Mask(count: count, sparsity: sparsity, seed: 1)
      let w = filled(count)
      for i in 0..<count where mask.mask[i] == 0 { w[i] = 0 }
      return (mask, w)
    }
    let step: (Bool) -> Void
    let execution: () -> SparseExecutionState
    switch shape {
    case .linear(_, let n, let inF, let outF):
      let products = LinearProducts(inFeatures: inF, outFeatures: outF)
      let (mask, w) = maskedWeights(inF * outF)
      let (x, y, dy, dx, dw) = (
        filled(n * inF), filled(n * outF), filled(n * outF), filled(n * inF), filled(inF * outF)
      )
      step = { sparse in
        let m: MaskSource? = sparse ? mask : nil
        products.forward(x: x.data, batch: n, weights: w.data, bias: nil, mask: m, y: y.data)
        products.backward(
          x: x.data, dy: dy.data, batch: n, weights: w.data, mask: m, dx: dx.data, dw: dw.data,
          db: nil, maskWeightGradient: true)
      }
      execution = { products.execution }
    case .conv(_, let n, let cin, let cout, let size):
      let products = Conv2dProducts(
        inChannels: cin, outChannels: cout, kernelHeight: 3, kernelWidth: 3)
      let count = cout * cin * 9
      let (mask, w) = maskedWeights(count)
      var s = ck_conv_shape(
        batch: Int32(n), in_channels: Int32(cin), in_height: Int32(size), in_width: Int32(size),
        out_channels: Int32(cout), kernel_h: 3, kernel_w: 3, stride: 1, padding: 1, out_height: 0,
        out_width: 0)
      _ = ck_conv_shape_finish(&s)
      let (x, y, dy, dx, dw) = (
        filled(n * cin * size * size), filled(n * cout * size * size),
        filled(n * cout * size * size), filled(n * cin * size * size), filled(count)
      )
      let geometry = s
      step = { sparse in
        let m: MaskSource? = sparse ? mask : nil
        products.forward(shape: geometry, x: x.data, weights: w.data, bias: nil, mask: m, y: y.data)
        products.backward(
          shape: geometry, x: x.data, dy: dy.data, weights: w.data, mask: m, dx: dx.data,
          dw: dw.data, db: nil, maskWeightGradient: true)
      }
      execution = { products.execution }
    }
    step(true)
    let ran = execution()
    step(false)
    var dense: [Double] = []
    var sparse: [Double] = []
    for _ in 0..<max(1, pairs) {
      dense.append(medianSeconds(repeats: 1) { step(false) } * 1e3)
      sparse.append(medianSeconds(repeats: 1) { step(true) } * 1e3)
    }
    let ratios = zip(dense, sparse).map { $0 / $1 }.sorted()
    return (
      dense.sorted()[dense.count / 2], sparse.sorted()[sparse.count / 2], ratios[ratios.count / 2],
      ran.forwardSparse, ran.backwardSparse
    )
  }
}
