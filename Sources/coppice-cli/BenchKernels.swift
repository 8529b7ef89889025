import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

struct BenchKernels: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kernels",
    abstract: "Sparse kernels vs dense OpenBLAS sgemm: forward, input and weight gradients.",
    discussion: """
      For every shape M×K×N (W is M×K sparse, X is K×N) and sparsity s, times dense OpenBLAS \
      sgemm (its own threading, T threads) and the sparse kernel (T OpenMP threads) on the same \
      product: forward Y = W·X, input_grad dX = Wᵀ·dY, weight_grad dW = dY·Xᵀ (at kept \
      positions for the sparse kernel), and backward = both gradients. The mask has exactly \
      round(M·K·s) zeros at random positions. Times are the median of --reps runs after a \
      warm-up. The reference cnn's convolutions (or, with --conv-model resnet20, ResNet-20's \
      three stride-1 layer shapes) at batch 128 run end to end through the convolution API \
      (dense ck_conv2d_* against ck_sparse_conv2d_*); their shape is \
      [Cout, Cin·9, batch·OH·OW]. The sparse-kernel issue's acceptance bars are checked \
      outside the product, from --json: scripts/check-kernel-bars.py (make bench runs it).
      """)

  @Option(
    name: .customLong("shape"),
    help:
      "A product shape MxKxN (repeatable; replaces the default GEMM shapes, no conv layers unless --conv)."
  )
  var shapes: [GEMMShape] = []
  @Option(name: .customLong("sparsity"), help: "A sparsity in [0, 1) (repeatable).")
  var sparsities: [Double] = []
  @Option(help: "Threads for both dense and sparse kernels (default: all cores).") var threads: Int?
  @Option(help: "Timed runs per measurement (the median is reported).") var reps = 5
  @Flag(help: "Also run the cnn conv layers (alone: only them).") var conv = false
  @Flag(help: "Skip the cnn conv layers.") var noConv = false
  @Option(help: "Whose conv layers --conv runs: cnn, or resnet20 (its stride-1 layer shapes).")
  var convModel: ConvModel = .cnn
  @Option(help: "Write one JSON record per measurement to this file.") var json: String?
  @Option(help: "Write the table as Markdown to this file.") var markdown: String?

  /// The four GEMM shapes of the sparse-kernel issue (two of them conv-as-GEMM products).
  static let issueShapes = [
    GEMMShape(256, 2304, 3136), GEMMShape(512, 4608, 784), GEMMShape(1024, 1024, 256),
    GEMMShape(4096, 1024, 128),
  ]
  static let defaultSparsities = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
  static let convBatch = 128
  static let cnnConvLayers = [
    ConvLayerSpec(name: "cnn.conv1", inChannels: 1, outChannels: 32, size: 28),
    ConvLayerSpec(name: "cnn.conv2", inChannels: 32, outChannels: 64, size: 28),
    ConvLayerSpec(name: "cnn.conv3", inChannels: 64, outChannels: 128, size: 14),
  ]
  /// ResNet-20's stride-1 convolutions (each stage's shape; the stride-2 ones are not timed).
  static let resnet20ConvLayers = [
    ConvLayerSpec(name: "resnet20.layer1", inChannels: 16, outChannels: 16, size: 28),
    ConvLayerSpec(name: "resnet20.layer2", inChannels: 32, outChannels: 32, size: 14),
    ConvLayerSpec(name: "resnet20.layer3", inChannels: 64, outChannels: 64, size: 7),
  ]

  /// The models whose convolution shapes --conv times.
  enum ConvModel: String, ExpressibleByArgument, CaseIterable {
    case cnn, resnet20
  }

  func validate() throws {
    for s in sparsities where !(s >= 0 && s < 1) {
      throw ValidationError("--sparsity must be in [0, 1), got \(s)")
    }
    if let t = threads { try requireRange(t, 1...Threads.maximum, "--threads") }
    try requireRange(reps, 1...1_000_000, "--reps")
    if conv && noConv { throw ValidationError("--conv and --no-conv exclude each other") }
  }

  func run() throws {
    let threadCount = threads ?? Threads.availableCores
    Threads.set(threadCount)
    let sparsityList = sparsities.isEmpty ? Self.defaultSparsities : sparsities
    let gemmShapes: [GEMMShape]
    if !shapes.isEmpty {
      gemmShapes = shapes
    } else {
      gemmShapes = conv ? [] : Self.issueShapes
    }
    let runConv = shapes.isEmpty ? !noConv : conv
    let isa = KernelISA.sparse
    let loadBefore = Self.loadAverage()

    print(
      "coppice bench kernels: \(threadCount) threads, ISA \(isa) (dense loops \(KernelISA.dense), "
        + "OpenBLAS \(KernelISA.blasCore)), "
        + "median of \(reps) after a warm-up, "
        + "load average \(loadBefore) at start")
    if let load = Self.loadAverages()?.first, load >= 0.5 {
      print(
        "note: the machine is busy (1-minute load \(String(format: "%.2f", load)) before this run); "
          + "dense and sparse are timed side by side, but absolute times and GFLOP/s may be low")
    }
    print(Self.tableHeader())
    var rows: [KernelRow] = []
    var rng = SeededGenerator(seed: 3, stream: "bench-kernels")
    for shape in gemmShapes {
      benchProduct(shape, sparsities: sparsityList, threads: threadCount, rng: &rng) { row in
        rows.append(row)
        print(Self.tableRow(row))
        fflush(nil)
      }
    }
    if runConv {
      for layer in convModel == .cnn ? Self.cnnConvLayers : Self.resnet20ConvLayers {
        benchConvolution(layer, sparsities: sparsityList, rng: &rng) { row in
          rows.append(row)
          print(Self.tableRow(row))
          fflush(nil)
        }
      }
    }
    let loadAfter = Self.loadAverage()
    print("load average \(loadAfter) at end")

    let measurements = rows.flatMap(\.all)
    if let json {
      try Self.jsonText(measurements, threads: threadCount, isa: isa, reps: reps).write(
        toFile: json, atomically: true, encoding: .utf8)
    }
    if let markdown {
      let caption =
        "`coppice bench kernels`: \(threadCount) threads, ISA \(isa), median of \(reps) runs; "
        + "dense = OpenBLAS sgemm (\(threadCount) threads) or the engine's dense convolution; "
        + "load average \(loadBefore) at start, \(loadAfter) at end."
      try Self.markdownText(rows, caption: caption).write(
        toFile: markdown, atomically: true, encoding: .utf8)
    }
  }

  // MARK: - Measurements

  /// Times the three products of one shape, dense once and sparse per sparsity.
  func benchProduct(
    _ shape: GEMMShape, sparsities: [Double], threads: Int, rng: inout SeededGenerator,
    emit: (KernelRow) -> Void
  ) {
    let (m, k, n) = (shape.m, shape.k, shape.n)
    let w = Buffer(m * k)
    let x = Buffer(k * n)
    let dy = Buffer(m * n)
    let y = Buffer(m * n)
    let dx = Buffer(k * n)
    let dw = Buffer(m * k)
    let values = Buffer(m * k)
    defer { for buffer in [w, x, dy, y, dx, dw, values] { buffer.free() } }
    w.fillUniform(&rng)
    x.fillUniform(&rng)
    dy.fillUniform(&rng)
    var mask = MaskBuilder(count: m * k)
    defer { mask.free() }
    let (M, K, N, T) = (Int32(m), Int32(k), Int32(n), Int32(threads))

    for s in sparsities {
      let keep = mask.randomize(zeros: Int((Double(m * k) * s).rounded()), rng: &rng)
      guard let format = mask.withBytes({ ck_sparse_create_u8(M, K, w.p, $0) }) else {
        print("cannot build the sparse form of \(m)x\(k); skipped")
        continue
      }
      defer { ck_sparse_free(format) }
      // Dense is timed again next to every sparse measurement, so a change in the machine's
      // load (it may be shared) skews both sides of a ratio alike. The pauses let OpenMP's
      // and OpenBLAS's spinning workers go to sleep before the other pool starts.
      pauseBetweenThreadPools()
      let denseForward = time {
        ck_sgemm_openblas(T, 0, 0, M, N, K, 1, w.p, K, x.p, N, 0, y.p, N)
      }
      let denseInput = time {
        ck_sgemm_openblas(T, 1, 0, K, N, M, 1, w.p, K, dy.p, N, 0, dx.p, N)
      }
      let denseWeight = time {
        ck_sgemm_openblas(T, 0, 1, M, K, N, 1, dy.p, N, x.p, N, 0, dw.p, K)
      }
      pauseBetweenThreadPools()
      let sparseForward = time { ck_sparse_spmm(format, N, x.p, N, nil, 0, y.p, N) }
      let sparseInput = time { ck_sparse_spmm_t(format, N, dy.p, N, 0, dx.p, N) }
      let sparseWeight = time {
        ck_sparse_sddmm(format, N, dy.p, N, x.p, N, 0, values.p)
      }
      let density = Double(keep) / Double(m * k)
      func measurement(
        _ op: String, _ kernelOp: ck_sparse_op?, dense: KernelTiming, sparse: KernelTiming,
        flops: Double,
        dispatch: Bool? = nil
      ) -> KernelMeasurement {
        KernelMeasurement(
          op: op, shape: shape, layer: nil, sparsity: s, nonzeros: keep, dense: dense,
          sparse: sparse,
          dispatchSparse: dispatch ?? (ck_sparse_prefer(kernelOp!, M, K, N, density) != 0),
          flops: flops)
      }
      let fwd = measurement(
        "forward", CK_SPARSE_OP_FORWARD, dense: denseForward, sparse: sparseForward,
        flops: shape.flops)
      let ig = measurement(
        "input_grad", CK_SPARSE_OP_INPUT_GRAD, dense: denseInput, sparse: sparseInput,
        flops: shape.flops)
      let wg = measurement(
        "weight_grad", CK_SPARSE_OP_WEIGHT_GRAD, dense: denseWeight, sparse: sparseWeight,
        flops: shape.flops)
      let bwd = measurement(
        "backward", nil, dense: denseInput + denseWeight, sparse: sparseInput + sparseWeight,
        flops: 2 * shape.flops, dispatch: ig.dispatchSparse && wg.dispatchSparse)
      emit(
        KernelRow(
          label: shape.description, sparsity: s, forward: fwd, inputGrad: ig, weightGrad: wg,
          backward: bwd))
    }
  }

  /// Times one convolution at batch 128: the engine's dense convolution against the
  /// sparse convolution, forward and backward (input and weight gradients).
  func benchConvolution(
    _ layer: ConvLayerSpec, sparsities: [Double], rng: inout SeededGenerator,
    emit: (KernelRow) -> Void
  ) {
    var cs = ck_conv_shape(
      batch: Int32(Self.convBatch), in_channels: Int32(layer.inChannels),
      in_height: Int32(layer.size), in_width: Int32(layer.size),
      out_channels: Int32(layer.outChannels), kernel_h: 3, kernel_w: 3, stride: 1, padding: 1,
      out_height: 0, out_width: 0)
    precondition(ck_conv_shape_finish(&cs) == 0, "invalid convolution \(layer.name)")
    let m = layer.outChannels
    let k = layer.inChannels * 9
    let pixels = Int(cs.out_height * cs.out_width)
    let shape = GEMMShape(m, k, Self.convBatch * pixels)
    let inputCount = Self.convBatch * layer.inChannels * layer.size * layer.size
    let outputCount = Self.convBatch * m * pixels
    let x = Buffer(inputCount)
    let dx = Buffer(inputCount)
    let y = Buffer(outputCount)
    let dy = Buffer(outputCount)
    let w = Buffer(m * k)
    let dw = Buffer(m * k)
    let values = Buffer(m * k)
    defer { for buffer in [x, dx, y, dy, w, dw, values] { buffer.free() } }
    x.fillUniform(&rng)
    dy.fillUniform(&rng)
    w.fillUniform(&rng)
    var mask = MaskBuilder(count: m * k)
    defer { mask.free() }

    pauseBetweenThreadPools()
    for s in sparsities {
      let keep = mask.randomize(zeros: Int((Double(m * k) * s).rounded()), rng: &rng)
      guard let format = mask.withBytes({ ck_sparse_create_u8(Int32(m), Int32(k), w.p, $0) })
      else {
        print("cannot build the sparse form of \(layer.name); skipped")
        continue
      }
      defer { ck_sparse_free(format) }
      // Both sides run on the OpenMP pool (the dense convolution calls single-threaded
      // OpenBLAS per image); dense is timed next to every sparse measurement.
      let denseForward = time { ck_conv2d_forward(&cs, x.p, w.p, nil, y.p) }
      let denseBackward = time { ck_conv2d_backward(&cs, x.p, w.p, dy.p, dx.p, dw.p, nil) }
      let sparseForward = time { ck_sparse_conv2d_forward(&cs, format, x.p, nil, y.p) }
      let sparseBackward = time {
        ck_sparse_conv2d_backward(&cs, format, x.p, dy.p, dx.p, values.p, nil)
      }
      // The engine's Conv2d asks the dispatch per image (N = OH·OW), and runs the sparse
      // backward only when both gradients prefer sparse.
      let density = Double(keep) / Double(m * k)
      func prefer(_ op: ck_sparse_op) -> Bool {
        ck_sparse_prefer(op, Int32(m), Int32(k), Int32(pixels), density) != 0
      }
      let fwd = KernelMeasurement(
        op: "forward", shape: shape, layer: layer.name, sparsity: s, nonzeros: keep,
        dense: denseForward, sparse: sparseForward,
        dispatchSparse: prefer(CK_SPARSE_OP_FORWARD), flops: shape.flops)
      let bwd = KernelMeasurement(
        op: "backward", shape: shape, layer: layer.name, sparsity: s, nonzeros: keep,
        dense: denseBackward, sparse: sparseBackward,
        dispatchSparse: prefer(CK_SPARSE_OP_INPUT_GRAD) && prefer(CK_SPARSE_OP_WEIGHT_GRAD),
        flops: 2 * shape.flops)
      emit(
        KernelRow(
          label: "\(layer.name) \(shape)", sparsity: s, forward: fwd, inputGrad: nil,
          weightGrad: nil, backward: bwd))
    }
  }

  /// Runs `body` once to warm up, then `reps` times; the median is what the table reports.
  func time(_ body: () -> Void) -> KernelTiming {
    body()
    var runs: [Double] = []
    for _ in 0..<reps {
      let start = DispatchTime.now().uptimeNanoseconds
      body()
      runs.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-6)
    }
    runs.sort()
    return KernelTiming(median: runs[runs.count / 2], min: runs[0], max: runs[runs.count - 1])
  }

  /// Lets idle OpenMP and OpenBLAS workers stop spinning before the other pool starts.
  func pauseBetweenThreadPools() { Thread.sleep(forTimeInterval: 0.3) }

  /// The 1, 5 and 15 minute load averages (nil when unavailable).
  static func loadAverages() -> [Double]? {
    var loads = [Double](repeating: 0, count: 3)
    return getloadavg(&loads, 3) == 3 ? loads : nil
  }

  static func loadAverage() -> String {
    loadAverages()?.map { String(format: "%.2f", $0) }.joined(separator: ", ") ?? "unknown"
  }
}
