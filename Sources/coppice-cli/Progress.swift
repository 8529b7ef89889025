import Coppice
import Foundation

/// Prints training progress: a live, rewritten line on a terminal; plain lines otherwise.
final class ProgressPrinter {
  private let live = isatty(STDOUT_FILENO) == 1
  private var lastPrint = Date.distantPast
  private var lastPlainFraction = -1.0

  func batch(_ p: BatchProgress) {
    let text =
      String(
        format: "epoch %d/%d  batch %d/%d  loss %.4f  %.0f img/s  lr %.4g  ETA %@",
        p.epoch, p.epochs, p.batch, p.batches, p.loss, p.imagesPerSecond, Double(p.learningRate),
        Self.duration(p.etaSeconds)) + (p.phase.isEmpty ? "" : "  [\(p.phase)]")
    if live {
      let now = Date()
      guard now.timeIntervalSince(lastPrint) > 0.1 || p.batch == p.batches else { return }
      lastPrint = now
      print("\r\u{1B}[2K" + text, terminator: "")
      fflush(nil)
    } else {
      // Plain output: about four lines per epoch.
      let fraction = Double(p.batch) / Double(p.batches)
      if p.batch == 1 { lastPlainFraction = 0 }
      if fraction - lastPlainFraction >= 0.25 || p.batch == p.batches {
        lastPlainFraction = fraction
        print(text)
        fflush(nil)
      }
    }
  }

  func endEpoch() {
    if live { print("\r\u{1B}[2K", terminator: "") }
  }

  static func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600
      ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
      : String(format: "%d:%02d", s / 60, s % 60)
  }
}

/// A fixed-width text table printed row by row.
struct TextTable {
  let columns: [(title: String, width: Int)]

  func header() -> String {
    let titles = columns.map { pad($0.title, $0.width) }.joined(separator: "  ")
    let rule = columns.map { String(repeating: "-", count: $0.width) }.joined(separator: "  ")
    return titles + "\n" + rule
  }

  func row(_ cells: [String]) -> String {
    zip(cells, columns).map { pad($0, $1.width) }.joined(separator: "  ")
  }

  private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
  }
}
