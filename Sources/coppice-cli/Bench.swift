import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks: training throughput against the OpenBLAS sgemm rate.",
    subcommands: [BenchTrain.self, BenchKernels.self, BenchLayers.self])
}

/// Times `body` `repeats` times after one warm-up call; returns the median in seconds.
func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
  body()
  var times: [Double] = []
  for _ in 0..<max(1, repeats) {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
  }
  times.sort()
  return times[times.count / 2]
}

/// GFLOP/s of OpenBLAS's own threaded sgemm on an M×K by K×N product.
func openBLASGFLOPS(m: Int, k: Int, n: Int, threads: Int, repeats: Int = 5) -> Double {
  let a = Tensor(shape: [m, k])
  let b = Tensor(shape: [k, n])
  let c = Tensor(shape: [m, n])
  var rng = SeededGenerator(seed: 1)
  for i in 0..<a.count { a[i] = rng.nextUniform() - 0.5 }
  for i in 0..<b.count { b[i] = rng.nextUniform() - 0.5 }
  let t = medianSeconds(repeats: repeats) {
    ck_sgemm_openblas(
      Int32(threads), 0, 0, Int32(m), Int32(n), Int32(k), 1, a.data, Int32(k), b.data, Int32(n),
      0, c.data, Int32(n))
  }
  return 2 * Double(m) * Double(n) * Double(k) / t / 1e9
}

struct BenchTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract:
      "Dense training-step throughput (images/s, useful GFLOP/s) vs OpenBLAS sgemm in the same run."
  )

  @Option(help: "Model: mlp, cnn or resnet20.") var model: ReferenceModel = .cnn
  @Option(help: "Mini-batch size.") var batchSize = 128
  @Option(help: "Threads.") var threads: Int?
  @Option(help: "Timed training steps.") var steps = 20
  @Option(help: "Write the results as JSON to this file.") var json: String?
  @Flag(help: "Also print forward/backward time per top-level layer.") var profile = false

  func validate() throws {
    try requireRange(batchSize, 1...4096, "--batch-size")
    try requireRange(steps, 1...1_000_000, "--steps")
    if let t = threads { try requireRange(t, 1...Threads.maximum, "--threads") }
  }

  func run() throws {
    let threadCount = threads ?? Threads.availableCores
    Threads.set(threadCount)
    let gemmShapes = [(256, 2304, 3136), (64, 288, 784 * batchSize), (128, 576, 196 * batchSize)]
    var gemm: [(shape: [Int], gflops: Double)] = []
    for (m, k, n) in gemmShapes {
      gemm.append(([m, k, n], openBLASGFLOPS(m: m, k: k, n: n, threads: threadCount)))
    }
    let reference = gemm.map(\.gflops).max() ?? 1
    for g in gemm {
      print(
        String(
          format: "OpenBLAS sgemm %@ (%d threads): %.1f GFLOP/s",
          g.shape.map(String.init).joined(separator: "×"), threadCount, g.gflops))
    }

    let net = model.build(seed: 0)
    var config = TrainingConfig()
    config.batchSize = batchSize
    let trainer = try Trainer(model: net, config: config)
    var rng = SeededGenerator(seed: 2)
    let n = batchSize * 2
    var images = [Float](repeating: 0, count: n * 784)
    for i in images.indices { images[i] = rng.nextNormal() }
    let labels = (0..<n).map { Int32($0 % 10) }
    let data = try Dataset(images: images, labels: labels, sampleShape: [1, 28, 28], classes: 10)
    let indices = Array(0..<batchSize)[...]
    let seconds = medianSeconds(repeats: steps) {
      _ = try? trainer.trainStep(train: data, indices: indices)
    }
    let imagesPerSecond = Double(batchSize) / seconds
    let flopsPerImage = net.trainingFLOPsPerSample
    let useful = flopsPerImage * imagesPerSecond / 1e9
    print(
      String(
        format:
          "%@ training step, batch %d, %d threads: %.1f ms/step, %.0f images/s, %.1f useful GFLOP/s (%.2f GFLOP per image)",
        model.rawValue, batchSize, threadCount, seconds * 1e3, imagesPerSecond, useful,
        flopsPerImage / 1e9))
    print(String(format: "fraction of the best sgemm rate: %.0f%%", 100 * useful / reference))
    if profile { profileLayers(net, data: data) }
    if let json {
      let record: [String: Any] = [
        "model": model.rawValue, "batch_size": batchSize, "threads": threadCount,
        "step_ms": seconds * 1e3, "images_per_second": imagesPerSecond,
        "useful_gflops": useful, "sgemm_gflops": reference,
        "fraction_of_sgemm": useful / reference,
        "sgemm": gemm.map { ["shape": $0.shape, "gflops": $0.gflops] },
      ]
      let data = try JSONSerialization.data(
        withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
      try data.write(to: URL(fileURLWithPath: json))
    }
  }
}

/// Times each top-level layer's forward and backward on one batch (median of several runs).
func profileLayers(_ model: Model, data: Dataset) {
  let batch = Tensor(shape: [min(128, data.count)] + data.sampleShape)
  var rng = SeededGenerator(seed: 0)
  let labels = data.fill(batch, indices: Array(0..<batch.shape[0])[...], rng: &rng)
  let layers = model.network.layers
  var forward = [Double](repeating: 0, count: layers.count)
  var backward = [Double](repeating: 0, count: layers.count)
  let loss = CrossEntropyLoss()
  let repeats = 5
  for r in 0...repeats {
    var h = batch
    for (i, layer) in layers.enumerated() {
      let t0 = DispatchTime.now().uptimeNanoseconds
      h = layer.forward(h, training: true)
      if r > 0 { forward[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6 }
    }
    var g = loss(h, labels: labels).gradient
    for (i, layer) in layers.enumerated().reversed() {
      let t0 = DispatchTime.now().uptimeNanoseconds
      g = layer.backward(g)
      if r > 0 { backward[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6 }
    }
  }
  print("layer                                          forward ms  backward ms")
  for (i, layer) in layers.enumerated() {
    let name = layer.description.padding(toLength: 46, withPad: " ", startingAt: 0)
    print(
      String(
        format: "%@ %10.2f %12.2f", name, forward[i] / Double(repeats),
        backward[i] / Double(repeats)))
  }
  print(
    String(
      format: "total                                          %10.2f %12.2f",
      forward.reduce(0, +) / Double(repeats), backward.reduce(0, +) / Double(repeats)))
}
