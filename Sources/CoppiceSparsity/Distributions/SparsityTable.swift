import Foundation

/// The file format of an explicit per-layer sparsity table: one `name sparsity` pair per line,
/// separated by spaces or tabs; `#` starts a comment; blank lines are ignored.
///
/// ```
/// # cnn at 90%, first conv kept denser
/// conv1.weight 0.5
/// conv2.weight 0.9
/// ```
public enum SparsityTable {
  /// Parses table text. `source` names the text in error messages (a path, or "table").
  /// Throws `CoppiceError.invalidFile` naming the line for: a line without exactly two fields,
  /// a sparsity that is not a number in [0, 1), a repeated name, or an empty table.
  public static func parse(_ text: String, source: String = "table") throws -> [String: Double] {
    var table: [String: Double] = [:]
    var lineNumbers: [String: Int] = [:]
    for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false)
      .enumerated()
    {
      let number = offset + 1
      let content =
        rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        .first ?? ""
      let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
      if fields.isEmpty { continue }
      func fail(_ reason: String) -> CoppiceError {
        CoppiceError.invalidFile(path: source, reason: "line \(number): \(reason)")
      }
      guard fields.count == 2 else {
        throw fail("expected `name sparsity`, found \(fields.count) field(s): \(content)")
      }
      let name = String(fields[0])
      guard let value = Double(fields[1]), value.isFinite, value >= 0, value < 1 else {
        throw fail("sparsity of \(name) must be a number in [0, 1), found \(fields[1])")
      }
      if let first = lineNumbers[name] {
        throw fail("\(name) is listed twice (first on line \(first))")
      }
      table[name] = value
      lineNumbers[name] = number
    }
    guard !table.isEmpty else {
      throw CoppiceError.invalidFile(path: source, reason: "no `name sparsity` lines")
    }
    return table
  }

  /// Reads and parses a table file.
  public static func load(path: String) throws -> [String: Double] {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw CoppiceError.io("cannot read sparsity table \(path): \(error.localizedDescription)")
    }
    return try parse(text, source: path)
  }
}
