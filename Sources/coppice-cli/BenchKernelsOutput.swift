import Foundation

/// The output of `coppice bench kernels`: the table on stdout, --json and --markdown.
extension BenchKernels {
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
    func exact(_ t: KernelTiming) -> String { "[\(t.median), \(t.min), \(t.max)]" }
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
        // Unrounded median/min/max of both sides, for scripts/check-kernel-bars.py.
        "\"timings_ms\": {\"dense\": \(exact(m.dense)), \"sparse\": \(exact(m.sparse))}",
        "\"threads\": \(threads)",
        "\"isa\": \"\(isa)\"",
        "\"reps\": \(reps)",
      ]
      return "  {" + fields.joined(separator: ", ") + "}"
    }
    return "[\n" + records.joined(separator: ",\n") + "\n]\n"
  }

  static func markdownText(_ rows: [KernelRow], caption: String) -> String {
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
    return lines.joined(separator: "\n") + "\n"
  }
}
