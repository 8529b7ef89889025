import ArgumentParser
import CCoppiceKernels
import Coppice
import Foundation

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
      warm-up. The reference cnn's convolutions at batch 128 run end to end through the \
      convolution API (dense ck_conv2d_* against ck_sparse_conv2d_*); their shape is \
      [Cout, Cin·9, batch·OH·OW]. Ends with one PASS/FAIL line per acceptance criterion of the \
      sparse-kernel issue, computed from this run.
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
  @Option(help: "Write one JSON record per measurement to this file.") var json: String?
  @Option(help: "Write the table as Markdown to this file.") var markdown: String?

  static let issueShapes = [
    GEMMShape(256, 2304, 3136), GEMMShape(512, 4608, 784), GEMMShape(1024, 1024, 256),
    GEMMShape(4096, 1024, 128),
  ]
  /// The issue's conv-as-GEMM shapes (the break-even criterion applies to them).
  static let convGEMMShapes = [GEMMShape(256, 2304, 3136), GEMMShape(512, 4608, 784)]
  static let defaultSparsities = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
  static let convBatch = 128
  static let cnnConvLayers = [
    ConvLayerSpec(name: "cnn.conv1", inChannels: 1, outChannels: 32, size: 28),
    ConvLayerSpec(name: "cnn.conv2", inChannels: 32, outChannels: 64, size: 28),
    ConvLayerSpec(name: "cnn.conv3", inChannels: 64, outChannels: 128, size: 14),
  ]
  /// Issue 3: "its first conv is too small to gain" — reported, not held to the break-even bar.
  static let breakEvenExempt: Set<String> = ["cnn.conv1"]

  func validate() throws {
    for s in sparsities where !(s >= 0 && s < 1) {
      throw ValidationError("--sparsity must be in [0, 1), got \(s)")
    }
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    if reps < 1 { throw ValidationError("--reps must be at least 1") }
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
    let isa = Self.isaName(Int(ck_sparse_isa()))
    let loadBefore = Self.loadAverage()

    print(
      "coppice bench kernels: \(threadCount) threads, ISA \(isa), median of \(reps) after a warm-up, "
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
      for layer in Self.cnnConvLayers {
        benchConvolution(layer, sparsities: sparsityList, rng: &rng) { row in
          rows.append(row)
          print(Self.tableRow(row))
          fflush(nil)
        }
      }
    }
    let loadAfter = Self.loadAverage()
    print("load average \(loadAfter) at end")

    let verdicts = Self.acceptance(rows)
    print("")
    print("Acceptance (issue 3), computed from this run:")
    for v in verdicts {
      print("  \(v.status.padding(toLength: 10, withPad: " ", startingAt: 0)) \(v.text)")
    }
    let failed = verdicts.filter { $0.status == "FAIL" }.count
    let passed = verdicts.filter { $0.status == "PASS" }.count
    print("  \(passed) PASS, \(failed) FAIL, \(verdicts.count - passed - failed) other")
    if let note = Self.noiseNote(rows) { print("  NOTE       \(note)") }

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
      try Self.markdownText(rows, caption: caption, verdicts: verdicts).write(
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

  /// Times one cnn convolution at batch 128: the engine's dense convolution against the
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

  static func isaName(_ isa: Int) -> String {
    switch isa {
    case 2: return "avx512"
    case 1: return "avx2"
    default: return "portable"
    }
  }

  /// The 1, 5 and 15 minute load averages (nil when unavailable).
  static func loadAverages() -> [Double]? {
    var loads = [Double](repeating: 0, count: 3)
    return getloadavg(&loads, 3) == 3 ? loads : nil
  }

  static func loadAverage() -> String {
    loadAverages()?.map { String(format: "%.2f", $0) }.joined(separator: ", ") ?? "unknown"
  }

  // MARK: - Acceptance

  struct Verdict {
    var status: String
    var text: String
  }

  static func percent(_ s: Double) -> String { String(format: "%g%%", (s * 1000).rounded() / 10) }

  static func sameSparsity(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

  /// One verdict per acceptance criterion of issue 3, from the measured rows.
  static func acceptance(_ rows: [KernelRow]) -> [Verdict] {
    let measurements = rows.flatMap(\.all)
    let products = measurements.filter { $0.layer == nil }
    var verdicts: [Verdict] = []

    func speedupCriterion(op: String, sparsity: Double, atLeast bar: Double) {
      var parts: [String] = []
      var missing: [String] = []
      var allPass = true
      for shape in issueShapes {
        guard
          let found = products.first(where: {
            $0.op == op && $0.shape == shape && sameSparsity($0.sparsity, sparsity)
          })
        else {
          missing.append(shape.description)
          continue
        }
        if found.speedup < bar { allPass = false }
        parts.append(
          String(
            format: "%@ %.2f×%@", shape.description, found.speedup,
            found.speedup < bar ? " (FAIL)" : ""))
      }
      let status: String
      if parts.isEmpty {
        status = "NOT RUN"
      } else if !allPass {
        status = "FAIL"
      } else {
        status = missing.isEmpty ? "PASS" : "PARTIAL"
      }
      var text =
        "\(op) at \(percent(sparsity)) sparsity ≥ \(String(format: "%g", bar))× on each of the four GEMM shapes: "
        + (parts.isEmpty ? "—" : parts.joined(separator: ", "))
      if !missing.isEmpty { text += "; not measured: " + missing.joined(separator: ", ") }
      verdicts.append(Verdict(status: status, text: text))
    }
    speedupCriterion(op: "forward", sparsity: 0.9, atLeast: 4)
    speedupCriterion(op: "forward", sparsity: 0.8, atLeast: 2)
    speedupCriterion(op: "backward", sparsity: 0.9, atLeast: 3)

    // Break-even: the smallest measured sparsity at which the sparse forward is at least as
    // fast as dense, per conv shape (the conv-as-GEMM products and the cnn layers).
    var convGroups: [(label: String, exempt: Bool, forward: [KernelMeasurement])] = []
    for shape in convGEMMShapes {
      let f = products.filter { $0.op == "forward" && $0.shape == shape }
      if !f.isEmpty { convGroups.append((shape.description, false, f)) }
    }
    var layerNames: [String] = []
    for m in measurements where m.layer != nil && !layerNames.contains(m.layer!) {
      layerNames.append(m.layer!)
    }
    for name in layerNames {
      let f = measurements.filter { $0.op == "forward" && $0.layer == name }
      convGroups.append(
        (
          "\(name) [\(f[0].shape.dims.map(String.init).joined(separator: ","))]",
          breakEvenExempt.contains(name), f
        ))
    }
    for group in convGroups {
      let sorted = group.forward.sorted { $0.sparsity < $1.sparsity }
      var text = "break-even (sparse forward ≥ dense) at or below 60% sparsity, \(group.label): "
      var status: String
      if let first = sorted.firstIndex(where: { $0.speedup >= 1 }) {
        let s = sorted[first].sparsity
        status = s <= 0.6 + 1e-9 ? "PASS" : "FAIL"
        if first == 0 && status == "FAIL" {
          // Sparse already wins at the smallest sparsity measured, which is above 60%: the
          // run says nothing about 60%.
          status = "UNKNOWN"
        }
        if first == 0 {
          text +=
            "≤ \(percent(s)) (already \(String(format: "%.2f", sorted[0].speedup))× at the smallest measured sparsity)"
        } else {
          let a = sorted[first - 1]
          let b = sorted[first]
          let t = (1 - a.speedup) / (b.speedup - a.speedup)
          let estimate = a.sparsity + t * (b.sparsity - a.sparsity)
          text +=
            "measured \(percent(s)) (\(String(format: "%.2f", a.speedup))× at \(percent(a.sparsity)), "
            + "\(String(format: "%.2f", b.speedup))× at \(percent(s)); interpolated ≈ \(percent(estimate)))"
        }
      } else {
        status = "FAIL"
        let best = sorted.max { $0.speedup < $1.speedup }!
        text +=
          "none up to \(percent(sorted.last!.sparsity)) (best \(String(format: "%.2f", best.speedup))× at \(percent(best.sparsity)))"
      }
      if group.exempt {
        text += " — \(status) but exempt: issue 3 says the first conv is too small to gain"
        status = "EXEMPT"
      }
      verdicts.append(Verdict(status: status, text: text))
    }

    // Dispatch: sparse must never be chosen where it is slower. Backward of plain products is
    // two separate decisions (input_grad, weight_grad), checked one by one.
    let decisions = measurements.filter { $0.layer != nil || $0.op != "backward" }
    let wrong = decisions.filter { $0.dispatchSparse && $0.speedup < 1 }
    let missed = decisions.filter { !$0.dispatchSparse && $0.speedup > 1 }
    var text =
      "dispatch never picks sparse where it is slower: \(decisions.filter(\.dispatchSparse).count) of \(decisions.count) decisions sparse, \(wrong.count) slower than dense"
    if !wrong.isEmpty {
      text +=
        " ("
        + wrong.map {
          "\($0.op) \($0.layer ?? $0.shape.description) @\(percent($0.sparsity)) \(String(format: "%.2f", $0.speedup))×"
        }.joined(separator: ", ") + ")"
    }
    text += "; dense kept where sparse was faster: \(missed.count)"
    if decisions.isEmpty {
      verdicts.append(Verdict(status: "NOT RUN", text: text))
    } else {
      verdicts.append(Verdict(status: wrong.isEmpty ? "PASS" : "FAIL", text: text))
    }
    return verdicts
  }

  /// Rows whose timed runs disagree by more than this (max/min) are called noisy.
  static let noisySpread = 1.25

  /// A warning when other work on the machine made the timings unsteady, else nil.
  static func noiseNote(_ rows: [KernelRow]) -> String? {
    let noisy = rows.filter { $0.spread > noisySpread }
    guard !noisy.isEmpty else { return nil }
    let worst = noisy.max { $0.spread < $1.spread }!
    return
      "\(noisy.count) of \(rows.count) rows have timed runs differing by more than "
      + "\(String(format: "%.2f", noisySpread))× (worst \(String(format: "%.1f", worst.spread))× on "
      + "\(worst.label) at \(percent(worst.sparsity))): the machine was not quiet; verdicts near a bar "
      + "are not reliable"
  }

  // MARK: - Output

  private static func cell(_ text: String, _ width: Int, left: Bool = false) -> String {
    let pad = String(repeating: " ", count: max(0, width - text.count))
    return left ? text + pad : pad + text
  }

  private static let labelWidth = 26

  static func tableHeader() -> String {
    let group = { (title: String, width: Int) -> String in
      let dashes = max(2, width - title.count - 2)
      let left = String(repeating: "-", count: dashes / 2)
      let right = String(repeating: "-", count: dashes - dashes / 2)
      return " " + left + " " + title + " " + right
    }
    let line1 =
      cell("", labelWidth + 6) + " " + group("forward", 44) + " " + group("input_grad", 26) + " "
      + group("weight_grad", 26) + " " + group("backward (ig+wg)", 26)
    let sub = cell("dense", 9) + cell("sparse", 9) + cell("speedup", 8)
    let line2 =
      cell("shape", labelWidth, left: true) + cell("s", 6) + "  " + sub + cell("GF/s", 9)
      + cell("%ideal", 9) + "  " + sub + "  " + sub + "  " + sub + cell("dispatch", 13)
      + cell("spread", 8)
    return line1 + "\n" + line2
  }

  /// Milliseconds with three significant digits or more (sub-millisecond kernels stay readable).
  static func msText(_ ms: Double) -> String {
    String(format: ms >= 100 ? "%.1f" : ms >= 1 ? "%.2f" : "%.3f", ms)
  }

  static func tableRow(_ row: KernelRow) -> String {
    func triple(_ m: KernelMeasurement?) -> String {
      guard let m else { return cell("—", 9) + cell("—", 9) + cell("—", 8) }
      return cell(msText(m.denseMs), 9)
        + cell(msText(m.sparseMs), 9)
        + cell(String(format: "%.2fx", m.speedup), 8)
    }
    let f = row.forward
    return cell(row.label, labelWidth, left: true) + cell(String(format: "%.2f", row.sparsity), 6)
      + "  " + triple(f) + cell(String(format: "%.1f", f.gflops), 9)
      + cell(String(format: "%.0f%%", 100 * f.fractionOfIdeal), 9) + "  " + triple(row.inputGrad)
      + "  " + triple(row.weightGrad) + "  " + triple(row.backward)
      + cell(dispatchText(row), 13) + cell(String(format: "%.2f", row.spread), 8)
  }

  /// The dispatch decisions of a row: F(orward) I(nput grad) W(eight grad) or B(ackward),
  /// each S(parse) or D(ense).
  static func dispatchText(_ row: KernelRow) -> String {
    func c(_ m: KernelMeasurement) -> String { m.dispatchSparse ? "S" : "D" }
    if let ig = row.inputGrad, let wg = row.weightGrad {
      return "F:\(c(row.forward)) I:\(c(ig)) W:\(c(wg))"
    }
    return "F:\(c(row.forward)) B:\(c(row.backward))"
  }

  static func jsonNumber(_ x: Double, digits: Double = 1e4) -> String {
    guard x.isFinite else { return "null" }
    return "\((x * digits).rounded() / digits)"
  }

  static func jsonText(_ measurements: [KernelMeasurement], threads: Int, isa: String, reps: Int)
    -> String
  {
    let records = measurements.map { m -> String in
      var fields = [
        "\"op\": \"\(m.op)\"",
        "\"shape\": [\(m.shape.dims.map(String.init).joined(separator: ", "))]",
      ]
      if let layer = m.layer { fields.append("\"layer\": \"\(layer)\"") }
      fields += [
        "\"sparsity\": \(jsonNumber(m.sparsity, digits: 1e6))",
        "\"nnz\": \(m.nonzeros)",
        "\"dense_ms\": \(jsonNumber(m.denseMs))",
        "\"sparse_ms\": \(jsonNumber(m.sparseMs))",
        "\"dense_min_ms\": \(jsonNumber(m.dense.min))",
        "\"sparse_min_ms\": \(jsonNumber(m.sparse.min))",
        "\"dense_spread\": \(jsonNumber(m.dense.spread, digits: 1e3))",
        "\"sparse_spread\": \(jsonNumber(m.sparse.spread, digits: 1e3))",
        "\"speedup\": \(jsonNumber(m.speedup))",
        "\"gflops\": \(jsonNumber(m.gflops, digits: 100))",
        "\"ideal_speedup\": \(jsonNumber(m.idealSpeedup))",
        "\"fraction_of_ideal\": \(jsonNumber(m.fractionOfIdeal))",
        "\"dispatch_sparse\": \(m.dispatchSparse)",
        "\"threads\": \(threads)",
        "\"isa\": \"\(isa)\"",
        "\"reps\": \(reps)",
      ]
      return "  {" + fields.joined(separator: ", ") + "}"
    }
    return "[\n" + records.joined(separator: ",\n") + "\n]\n"
  }

  static func markdownText(_ rows: [KernelRow], caption: String, verdicts: [Verdict]) -> String {
    var lines = [caption, ""]
    lines.append(
      "| shape (M×K×N) | sparsity | forward dense ms | forward sparse ms | forward speedup | "
        + "forward GFLOP/s | forward % of ideal | input_grad speedup | weight_grad speedup | "
        + "backward dense ms | backward sparse ms | backward speedup | dispatch | spread |")
    lines.append("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:--|--:|")
    for row in rows {
      let f = row.forward
      let b = row.backward
      let label =
        f.layer.map { "\($0) (\(f.shape.dims.map(String.init).joined(separator: "×")))" }
        ?? f.shape.dims.map(String.init).joined(separator: "×")
      let cells = [
        label, String(format: "%.2f", row.sparsity), msText(f.denseMs),
        msText(f.sparseMs), String(format: "%.2f×", f.speedup),
        String(format: "%.0f", f.gflops), String(format: "%.0f%%", 100 * f.fractionOfIdeal),
        row.inputGrad.map { String(format: "%.2f×", $0.speedup) } ?? "—",
        row.weightGrad.map { String(format: "%.2f×", $0.speedup) } ?? "—",
        msText(b.denseMs), msText(b.sparseMs),
        String(format: "%.2f×", b.speedup), dispatchText(row),
        String(format: "%.2f", row.spread),
      ]
      lines.append("| " + cells.joined(separator: " | ") + " |")
    }
    lines.append("")
    lines.append(
      "Dispatch: what `ck_sparse_prefer` picks — F forward, I input_grad, W weight_grad, "
        + "B backward (conv: sparse only when both gradients prefer it); S sparse, D dense. "
        + "Spread: the largest max/min of a row's timed runs (near 1 on a quiet machine).")
    lines.append("")
    for v in verdicts { lines.append("- **\(v.status)** \(v.text)") }
    if let note = noiseNote(rows) { lines.append("- **NOTE** \(note)") }
    return lines.joined(separator: "\n") + "\n"
  }
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
